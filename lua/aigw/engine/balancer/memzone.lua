-- aigw.engine.balancer.memzone -- a zone in a Lua table, for a balancer given no
-- shared zone (one process, or a spec with a fake clock).
--
--   local z = memzone.new(now)   -- now: function() -> seconds, for TTLs
--
-- get/set/add/incr/delete follow aigw.shared's semantics (nil/0 TTL: no
-- expiry; incr on a missing key starts from init, else nil, "not found";
-- an existing key keeps its TTL), without its argument checks: only the
-- balancer calls it.

local M = {}

local zone = {}
zone.__index = zone

function M.new(now)
  return setmetatable({ now = now, values = {}, expires = {} }, zone)
end

local function live(self, key)
  local exp = self.expires[key]
  if exp and exp <= self.now() then
    self.values[key], self.expires[key] = nil, nil
  end
  return self.values[key]
end

local function put(self, key, value, ttl)
  self.values[key] = value
  self.expires[key] = (value ~= nil and ttl and ttl > 0) and self.now() + ttl or nil
end

function zone:get(key)
  return live(self, key)
end

function zone:set(key, value, ttl)
  put(self, key, value, ttl)
  return true
end

function zone:add(key, value, ttl)
  if live(self, key) ~= nil then return nil, "exists" end
  put(self, key, value, ttl)
  return true
end

function zone:incr(key, delta, init, init_ttl)
  local v = live(self, key)
  if v == nil then
    if init == nil then return nil, "not found" end
    put(self, key, init + delta, init_ttl)
    return init + delta
  end
  if type(v) ~= "number" then return nil, "not a number" end
  self.values[key] = v + delta
  return v + delta
end

function zone:delete(key)
  put(self, key, nil)
  return true
end

return M

-- config.lua -- the Lua side of fuzz_config: loads a fuzzed config file
-- through aigw.engine.config (the same validator `aigw check`, the core's loader
-- and every worker VM run) in the target's own VM, where its lines count
-- as coverage, and says whether a config it accepted is one the core can
-- take. Returns the function the C target calls with the file's path:
--   ok (boolean), message (the error, or what is wrong with the result).

local config = require "aigw.engine.config"

local type, pairs, tostring = type, pairs, tostring

local function finite(v) return type(v) == "number" and v == v and v > -math.huge and v < math.huge end

-- What config.c copies into C integers: past their range the conversion is
-- undefined, so aigw.engine.config must refuse such values (float_cast_* in the
-- corpus).
local function overflows(c)
  local s = c.server
  for _, k in ipairs({ "max_body_size", "max_header_size" }) do
    if not finite(s[k]) or s[k] >= 2 ^ 64 then return "float_cast_size" end
  end
  if s.max_connections > 2147483647 then return "float_cast_int" end
  for _, k in ipairs({ "client_header_timeout", "client_body_timeout", "keepalive_timeout",
                       "send_timeout", "drain_timeout", "lua_time_limit", "lua_kill_after" }) do
    if not finite(s[k]) or s[k] * 1000 >= 2 ^ 64 then return "float_cast_duration" end
  end
  for _, size in pairs(c.shared) do
    if not finite(size) or size >= 2 ^ 64 then return "float_cast_size" end
  end
  return nil
end

-- A config accepted must be whole: the fields the core reads, of their types.
local function problem(c)
  if type(c) ~= "table" then return "load returned a " .. type(c) end
  if type(c.listen) ~= "table" or #c.listen == 0 then return "no listen address" end
  for _, l in ipairs(c.listen) do
    if type(l) ~= "string" then return "a listen address that is a " .. type(l) end
  end
  if c.admin_listen ~= nil and type(c.admin_listen) ~= "string" then
    return "admin_listen is a " .. type(c.admin_listen)
  end
  if type(c.server) ~= "table" then return "no server table" end
  for k, v in pairs(c.server) do
    if k ~= "plugin_jit" and (type(v) ~= "number" or v ~= v or v < 0) then
      return "server." .. tostring(k) .. " is " .. tostring(v)
    end
  end
  if type(c.shared) ~= "table" then return "no shared table" end
  for name, size in pairs(c.shared) do
    if type(name) ~= "string" or type(size) ~= "number" or size < 4096 then return "shared zone " .. tostring(name) end
  end
  if type(c.providers) ~= "table" or type(c.providers.mock) ~= "table" then return "no mock provider" end
  if type(c.plugins) ~= "table" then return "no plugin list" end
  return nil
end

return function(path)
  local ok, c = pcall(config.load, path)
  if not ok then
    if type(c) ~= "string" or c == "" then return false, "an error that is not a message: " .. tostring(c) end
    return false, c
  end
  local why = problem(c)
  if why then return true, why end
  why = overflows(c)
  if why then return true, "a value the core cannot hold (" .. why .. ")" end
  return true, nil
end

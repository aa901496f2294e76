-- aigw.shared -- the shared dictionaries of core/base/shdict.c, through the FFI.
--
--   local shared = require("aigw.shared")
--   local limits = shared.limits              -- the zone, or nil if none is configured
--   local n, err = limits:incr(key, 1, 0, 60)  -- nil, "no memory" when it cannot fit
--
-- Zones are declared in the config and shared by every worker; they survive
-- reloads. Methods follow OpenResty's ngx.shared.DICT: a failure returns
-- nil, err (err is aigw_strerror's string: "exists", "not found",
-- "not a number", "no memory", "value too large"); misuse raises
-- "bad argument #n to 'method' (...)". Keys are strings (numbers are
-- converted) of up to 65535 bytes; values are strings or numbers, and a nil
-- value deletes. TTLs are seconds, fractions allowed; nil or 0 is no expiry.
-- No method yields: every one may be called in any phase.

local ffi = require("ffi")
require("aigw.ffi_defs")

local C = ffi.C
local ffi_string = ffi.string
local error, tostring, tonumber, type = error, tostring, tonumber, type
local rawset, setmetatable = rawset, setmetatable

local NIL, STRING, NUMBER = 0, 1, 2

-- Out-parameters, allocated once. Each is read right after the call that
-- fills it, with no yield in between, so coroutines never see each other's.
local type_out = ffi.new("int[1]")
local str_out = ffi.new("const char *[1]")
local len_out = ffi.new("size_t[1]")
local num_out = ffi.new("double[1]")

local function strerror(rc)
  return ffi_string(C.aigw_strerror(rc))
end

-- Argument checks, called straight from a method: an error is reported at
-- the method's caller (level 3 from a check, level 4 from argerror).

local function argerror(n, method, msg)
  error("bad argument #" .. n .. " to '" .. method .. "' (" .. msg .. ")", 4)
end

local function zone_of(self, method)
  local d = type(self) == "table" and self._d or nil
  if d == nil then
    error("calling '" .. method .. "' on bad self (zone expected, got " .. type(self) ..
          "; call it as zone:" .. method .. "(...))", 3)
  end
  return d
end

local function check_key(key, method)
  local t = type(key)
  if t == "string" then return key end
  if t == "number" then return tostring(key) end
  argerror(1, method, "string expected, got " .. t)
end

local function check_ttl(ttl, n, method)
  if ttl == nil then return 0 end
  if type(ttl) ~= "number" then argerror(n, method, "number expected, got " .. type(ttl)) end
  -- not (ttl >= 0) rather than ttl < 0, so that NaN is refused too
  if not (ttl >= 0) then argerror(n, method, "ttl must be >= 0") end  -- luacheck: ignore 581
  return ttl
end

local function check_number(v, n, method)
  if type(v) ~= "number" then argerror(n, method, "number expected, got " .. type(v)) end
  return v
end

-- The C arguments for a value: type, string, length, number.
local function value_args(value, method)
  local t = type(value)
  if t == "string" then return STRING, value, #value, 0 end
  if t == "number" then return NUMBER, nil, 0, value end
  if t == "nil" then return NIL, nil, 0, 0 end
  argerror(2, method, "string, number or nil expected, got " .. t)
end

local zone = {}
local zone_mt = {
  __index = zone,
  __tostring = function(self) return "aigw.shared zone '" .. self._name .. "'" end,
}

-- The value, or nil when the key is absent or expired.
function zone:get(key)
  local d = zone_of(self, "get")
  key = check_key(key, "get")
  local rc = C.aigw_shdict_get(d, key, #key, type_out, str_out, len_out, num_out)
  if rc ~= 0 then return nil, strerror(rc) end
  local t = type_out[0]
  if t == STRING then return ffi_string(str_out[0], len_out[0]) end
  if t == NUMBER then return num_out[0] end
  return nil
end

-- true, or nil, err ("no memory", "value too large").
function zone:set(key, value, ttl)
  local d = zone_of(self, "set")
  key = check_key(key, "set")
  local vt, str, len, num = value_args(value, "set")
  ttl = check_ttl(ttl, 3, "set")
  local rc = C.aigw_shdict_set(d, key, #key, vt, str, len, num, ttl)
  if rc ~= 0 then return nil, strerror(rc) end
  return true
end

-- true, or nil, "exists" when the key is live.
function zone:add(key, value, ttl)
  local d = zone_of(self, "add")
  key = check_key(key, "add")
  local vt, str, len, num = value_args(value, "add")
  ttl = check_ttl(ttl, 3, "add")
  local rc = C.aigw_shdict_add(d, key, #key, vt, str, len, num, ttl)
  if rc ~= 0 then return nil, strerror(rc) end
  return true
end

-- true, or nil, "not found" when the key is absent or expired.
function zone:replace(key, value, ttl)
  local d = zone_of(self, "replace")
  key = check_key(key, "replace")
  local vt, str, len, num = value_args(value, "replace")
  ttl = check_ttl(ttl, 3, "replace")
  local rc = C.aigw_shdict_replace(d, key, #key, vt, str, len, num, ttl)
  if rc ~= 0 then return nil, strerror(rc) end
  return true
end

-- The new value, atomically across workers. A missing key starts from init
-- (with init_ttl) when init is given, else gives nil, "not found"; a string
-- value gives nil, "not a number". An existing key keeps its TTL.
function zone:incr(key, delta, init, init_ttl)
  local d = zone_of(self, "incr")
  key = check_key(key, "incr")
  delta = check_number(delta, 2, "incr")
  local has_init = 0
  if init ~= nil then
    init = check_number(init, 3, "incr")
    has_init = 1
  else
    init = 0
  end
  init_ttl = check_ttl(init_ttl, 4, "incr")
  local rc = C.aigw_shdict_incr(d, key, #key, delta, has_init, init, init_ttl, num_out)
  if rc ~= 0 then return nil, strerror(rc) end
  return num_out[0]
end

-- true, whether the key was there or not.
function zone:delete(key)
  local d = zone_of(self, "delete")
  key = check_key(key, "delete")
  C.aigw_shdict_delete(d, key, #key)
  return true
end

-- Seconds left (0 = no expiry), or nil, "not found".
function zone:ttl(key)
  local d = zone_of(self, "ttl")
  key = check_key(key, "ttl")
  local rc = C.aigw_shdict_ttl(d, key, #key, num_out)
  if rc ~= 0 then return nil, strerror(rc) end
  return num_out[0]
end

-- Drops every entry of the zone, for every worker.
function zone:flush_all()
  C.aigw_shdict_flush_all(zone_of(self, "flush_all"))
end

-- The zone's size in bytes, as configured.
function zone:capacity()
  return tonumber(C.aigw_shdict_capacity(zone_of(self, "capacity")))
end

-- Bytes not yet used by entries (header, key and value of each count).
function zone:free_space()
  local d = zone_of(self, "free_space")
  return tonumber(C.aigw_shdict_capacity(d) - C.aigw_shdict_used(d))
end

-- shared.NAME: looked up in the registry once per VM, then cached here.
-- Zones are created before the workers and never go away, so caching the
-- pointer is safe and an unknown name stays unknown.
return setmetatable({}, {
  __index = function(self, name)
    if type(name) ~= "string" then return nil end
    local d = C.aigw_shdict_lookup(name)
    if d == nil then return nil end
    local z = setmetatable({ _d = d, _name = name }, zone_mt)
    rawset(self, name, z)
    return z
  end,
  __newindex = function(_, name)
    error("aigw.shared is read-only (zones are declared in the config): cannot set '" ..
          tostring(name) .. "'", 2)
  end,
})

-- aigw.log -- the error log, shared with the C core (same lines, same
-- levels).
--
--   aigw.log.warn("upstream slow: ", ms, " ms")
--   aigw.log.info("quota", { consumer = 3, used = 1200, model = "gpt-4o" })
--     -> "quota consumer=3 model=gpt-4o used=1200"
--
-- A table as the last argument is written as key=value fields, keys
-- sorted, values quoted when they contain spaces, quotes, '=' or control
-- characters (Lua's %q escapes, "\n" for a newline); with log_format
-- "json" they are members of the line's object (numbers and booleans as
-- such, anything else as a string).

local ffi = require "ffi"
require "aigw.ffi_defs"

local C = ffi.C
local concat, select, tostring = table.concat, select, tostring

local M = { DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 }

local sort = table.sort
local ffi_new = ffi.new

-- The fields of one line, handed to the core, which formats them (quoted
-- key=value text, or JSON members). Reused: a line is formatted before
-- aigw_ffi_log_fields returns, and nothing yields in between.
local NFIELDS = 64
local fbuf = ffi_new("aigw_log_field_t[?]", NFIELDS)
local STR, RAW = 0, 1

local function emit_fields(level, msg, t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local n = #keys
  local buf = n <= NFIELDS and fbuf or ffi_new("aigw_log_field_t[?]", n)
  local keep = {}   -- every string stays referenced until the call returns
  for i, k in ipairs(keys) do
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    local tv = type(v)
    local f = buf[i - 1]
    if tv == "number" or tv == "boolean" then
      f.type = RAW
    else
      f.type = STR
    end
    v = tostring(v)
    keep[2 * i - 1], keep[2 * i] = k, v
    f.key, f.klen, f.s, f.n = k, #k, v, #v
  end
  C.aigw_ffi_log_fields(level, msg, #msg, buf, n)
  return keep
end

local enabled = C.aigw_ffi_log_enabled

local function emit(level, ...)
  if enabled(level) == 0 then return end   -- nothing is formatted for a line not written
  local n = select("#", ...)
  if n > 0 and type((select(n, ...))) == "table" then
    local parts = { ... }
    local t = parts[n]
    parts[n] = nil
    for i = 1, n - 1 do parts[i] = tostring(parts[i]) end
    emit_fields(level, concat(parts), t)
    return
  end
  local msg
  if n == 1 then
    msg = tostring((...))
  else
    local parts = { ... }
    for i = 1, n do parts[i] = tostring(parts[i]) end
    msg = concat(parts)
  end
  C.aigw_ffi_log(level, msg, #msg)
end

-- Whether lines of a level ("debug", "info", "warn", "error") are written:
-- for callers that would do work to make one.
local LEVELS = { debug = 0, info = 1, warn = 2, error = 3 }
function M.enabled(level)
  return enabled(LEVELS[level] or level) ~= 0
end

function M.debug(...) emit(0, ...) end
function M.info(...) emit(1, ...) end
function M.warn(...) emit(2, ...) end
function M.error(...) emit(3, ...) end

return M

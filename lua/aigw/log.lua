-- aigw.log -- the error log, shared with the C core (same lines, same
-- levels).
--
--   aigw.log.warn("upstream slow: ", ms, " ms")
--   aigw.log.info("quota", { consumer = 3, used = 1200, model = "gpt-4o" })
--     -> "quota consumer=3 model=gpt-4o used=1200"
--
-- A table as the last argument is written as key=value fields, keys
-- sorted, values quoted when they contain spaces, quotes or '='.

local ffi = require "ffi"
require "aigw.ffi_defs"

local C = ffi.C
local concat, select, tostring = table.concat, select, tostring

local M = { DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 }

local sort, format = table.sort, string.format

local function fields(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local out = {}
  for i, k in ipairs(keys) do
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    v = tostring(v)
    if v == "" or v:find('[%s"=]') then v = format("%q", v):gsub("\\\n", "\\n") end
    out[i] = k .. "=" .. v
  end
  return concat(out, " ")
end

local enabled = C.aigw_ffi_log_enabled

local function emit(level, ...)
  if enabled(level) == 0 then return end   -- nothing is formatted for a line not written
  local n = select("#", ...)
  if n > 0 and type((select(n, ...))) == "table" then
    local parts = { ... }
    local f = fields(parts[n])
    parts[n] = nil
    for i = 1, n - 1 do parts[i] = tostring(parts[i]) end
    local msg = concat(parts)
    if f ~= "" then msg = msg == "" and f or (msg .. " " .. f) end
    C.aigw_ffi_log(level, msg, #msg)
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

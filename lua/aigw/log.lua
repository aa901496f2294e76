-- aigw.log -- the error log, shared with the C core (same lines, same
-- levels). aigw.log.warn("upstream slow: ", ms, " ms")

local ffi = require "ffi"
require "aigw.ffi_defs"

local C = ffi.C
local concat, select, tostring = table.concat, select, tostring

local M = { DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 }

local function emit(level, ...)
  local n = select("#", ...)
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

function M.debug(...) emit(0, ...) end
function M.info(...) emit(1, ...) end
function M.warn(...) emit(2, ...) end
function M.error(...) emit(3, ...) end

return M

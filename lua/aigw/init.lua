-- aigw -- the namespace plugins use: one table built from a list of modules.
--
--   local aigw = require "aigw"
--   aigw.request.get_header("x-api-key")
--   aigw.shared.limits:incr(key, 1, 0)
--
-- Modules load on first use, so a plugin pays only for what it touches.

local ffi = require "ffi"
require "aigw.ffi_defs"
local C = ffi.C

local MODULES = {
  request = "aigw.request", response = "aigw.response", shared = "aigw.shared",
  log = "aigw.log", json = "aigw.json", crypto = "aigw.crypto", errors = "aigw.errors",
  timer = "aigw.timer", sse = "aigw.sse", usage = "aigw.usage", redis = "aigw.redis", http = "aigw.http",
}

local core = aigw_core or {}

local aigw = {
  version = core.version or "dev",
  -- Wall-clock time in seconds (sub-second precision), and a monotonic
  -- clock for measuring durations (seconds from an arbitrary start).
  now = function() return C.aigw_ffi_now() end,
  monotonic = function() return C.aigw_ffi_monotonic() end,
  sleep = core.sleep,
  exit = function(...) return require("aigw.response").exit(...) end,
  worker = { id = core.worker_id or 0, count = core.worker_count or 1 },
}

return setmetatable(aigw, {
  __index = function(t, k)
    local name = MODULES[k]
    if not name then return nil end
    local m = require(name)
    rawset(t, k, m)
    return m
  end,
})

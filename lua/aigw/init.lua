-- aigw -- the namespace plugins use: one table built from a list of modules.
--
--   local aigw = require "aigw"
--   aigw.request.get_header("x-api-key")
--   aigw.shared.limits:incr(key, 1, 0)
--
-- Modules load on first use, so a plugin pays only for what it touches.

local MODULES = {
  request = "aigw.request", shared = "aigw.shared", log = "aigw.log",
  json = "aigw.json", crypto = "aigw.crypto", errors = "aigw.errors",
}

local aigw = { version = aigw_core and aigw_core.version or "dev" }

return setmetatable(aigw, {
  __index = function(t, k)
    local name = MODULES[k]
    if not name then return nil end
    local m = require(name)
    rawset(t, k, m)
    return m
  end,
})

-- aigw.engine.health -- active health checks and readiness.
--
-- A provider with a health_check is probed every `interval` seconds (the
-- first probe at start) with its method and path under the provider's base
-- URL, its own key and a `timeout`. A 2xx or 3xx answer is a success.
-- After `unhealthy` failures in a row the provider is marked down in the
-- balancer (the shared zone, so every worker's plans leave its targets
-- out); after `healthy` successes in a row it is up again. Probes run on
-- one worker only, and only for the generation that is serving: a reload
-- starts them over with the new config, the marks in the zone stay.
--
-- Readiness (GET /ready, answered by the core without Lua) follows the
-- balancer: every second, one worker tells the core whether some alias
-- target can take traffic.

local ffi = require "ffi"
require "aigw.ffi_defs"
local log = require "aigw.log"
local timer = require "aigw.timer"

local C = ffi.C
local core = aigw_core

local M = {}

local MAX_PROBE_BODY = 64 * 1024

-- One probe: true when the provider answered 2xx/3xx in time.
local function probe(provider, hc)
  local op = core.http_op()
  local status, err = core.http_request(op, provider.target, hc.method, provider.base_path .. hc.path,
    provider.fetch_lines, hc.body, hc.timeout, MAX_PROBE_BODY, false, true, true, true, false)
  core.http_close(op)
  if not status then return false, tostring(err) end
  if status >= 200 and status < 400 then return true end
  return false, "status " .. status
end

local function checker(name, provider, hc, routing)
  local ok_run, fail_run = 0, 0
  return function()
    local ok, why = probe(provider, hc)
    if ok then
      ok_run, fail_run = ok_run + 1, 0
      if ok_run == hc.healthy and not routing:health(name) then
        routing:set_health(name, true)
        log.info("health check: provider ", name, " is healthy again")
      end
    else
      ok_run, fail_run = 0, fail_run + 1
      if fail_run == hc.unhealthy and routing:health(name) then
        routing:set_health(name, false)
        log.warn("health check: provider ", name, " is unhealthy (", why, ")")
      end
    end
  end
end

function M.set_ready(ready)
  C.aigw_ffi_set_ready(ready and 1 or 0)
end

-- Called by each worker's generation at start.
function M.start(conf, providers, routing)
  for name, p in pairs(conf.providers) do
    -- A provider whose check went away (a reload) is not left marked down.
    if not p.health_check and routing:health(name) == false then routing:set_health(name, true) end
  end
  for name, p in pairs(conf.providers) do
    local hc = p.health_check
    if hc then
      local check = checker(name, providers[name], hc, routing)
      timer.one_worker.at(0, check)
      timer.one_worker.every(hc.interval, check)
    end
  end
  -- From timers only: they run once this generation serves (a reload that
  -- is rejected never sets the flag), and stop when it is replaced.
  local function refresh() M.set_ready(routing:ready()) end
  timer.one_worker.at(0, refresh)
  if next(routing.groups) then timer.one_worker.every(1, refresh) end
end

return M

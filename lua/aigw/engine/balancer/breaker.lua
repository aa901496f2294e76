-- aigw.engine.balancer.breaker -- one circuit breaker per target, kept in the zone
-- so that every worker sees the same state.
--
-- Keys (each target's prefix P is built once, in balancer.new):
--   P:c        consecutive counted failures
--   P:o        open until (the balancer's clock); absent = closed; present
--              and past = half-open
--   P:p        the half-open probe's lease (zone:add: one holder at a time)
--   P:wr<n>, P:wf<n>  requests and counted failures in window number n
--                     (n = floor(now / window)): the window rolls over by
--                     its name, so no worker has to reset it, and the TTL
--                     only reclaims the space
--
-- Only outcomes that say the target is unwell reach failure() (connect,
-- timeout, 5xx, a broken stream); a 429 or a client's mistake does not.
-- The read-then-write steps (open, close) are not atomic across workers:
-- two workers may both open the breaker, which sets the same state twice.

local floor = math.floor

local M = {}

-- "closed", "open" or "half_open".
function M.state(zone, rec, now)
  local until_t = zone:get(rec.k_open)
  if until_t == nil then return "closed" end
  if now < until_t then return "open" end
  return "half_open"
end

-- Takes the half-open probe; false when another request holds it. The
-- lease lapses after the target's timeout (60 s without one), so a probe
-- whose request never finishes does not keep the target out for good.
function M.try_probe(zone, rec)
  return zone:add(rec.k_probe, 1, rec.lease) == true
end

-- The current window's keys, made once per window (not per request).
local function window_keys(rec, conf, now)
  local n = floor(now / conf.window)
  if rec.wn ~= n then
    rec.wn, rec.kwr, rec.kwf = n, rec.k_window .. "r" .. n, rec.k_window .. "f" .. n
  end
  return rec.kwr, rec.kwf
end

-- Latency averages from before the outage say nothing about the target
-- that comes back: they go, and the probe's success is the first sample.
local function open(zone, rec, conf, now)
  zone:set(rec.k_open, now + conf.cooldown)
  zone:delete(rec.k_consec)
  zone:delete(rec.k_probe)
  zone:delete(rec.k_ttfb)
  zone:delete(rec.k_total)
end

local function close(zone, rec, conf, now)
  zone:delete(rec.k_open)
  zone:delete(rec.k_consec)
  zone:delete(rec.k_probe)
  local kr, kf = window_keys(rec, conf, now)
  zone:delete(kr)
  zone:delete(kf)
end

function M.success(zone, rec, conf, now)
  local until_t = zone:get(rec.k_open)
  if until_t ~= nil then
    -- Half-open: the target answered, so it is back. While still open the
    -- success is from a request sent before the breaker opened: no news.
    if now >= until_t then close(zone, rec, conf, now) end
    return
  end
  local c = zone:get(rec.k_consec)
  if c ~= nil and c ~= 0 then zone:delete(rec.k_consec) end
  local kr = window_keys(rec, conf, now)
  zone:incr(kr, 1, 0, conf.window * 2)
end

function M.failure(zone, rec, conf, now)
  local until_t = zone:get(rec.k_open)
  if until_t ~= nil then
    if now >= until_t then open(zone, rec, conf, now) end   -- the probe failed
    return
  end
  local consec = zone:incr(rec.k_consec, 1, 0)
  local kr, kf = window_keys(rec, conf, now)
  local requests = zone:incr(kr, 1, 0, conf.window * 2)
  local failures = zone:incr(kf, 1, 0, conf.window * 2)
  if (consec and consec >= conf.failures)
     or (requests and failures and requests >= conf.min_requests and failures / requests >= conf.error_rate) then
    open(zone, rec, conf, now)
  end
end

return M

-- aigw.engine.balancer -- which of a model alias's targets a request goes to, and
-- in what order the others are tried when it fails.
--
--   local b = balancer.new(conf.models, { zone = aigw.shared.aigw_routing, prices = conf.prices })
--   local g = b.groups[alias]
--   local list, err = g:plan(ctx, { sticky_key = ..., prompt_tokens = ..., max_tokens = ... })
--   g:begin(list[1]) ... g:finish(list[1], { ok = false, class = "5xx" })
--
-- Per-target counts, latency averages, circuit breakers and active health
-- check results live in the zone, so every worker sees the same; the
-- strategies' own rotation state is per worker (see balancer/strategies).
-- Zone keys start with "r:": "r:<hash of alias|target key>:<what>" per target
-- (n requests, e failures, i in flight, t/l ttfb/total averages in seconds,
-- and the breaker's, see balancer/breaker), "r:h:<provider>" for health.
--
-- An attempt whose finish() never comes (its worker died) stays counted in
-- flight until the zone is flushed.
--
-- plan() runs for every request: the keys are built here, once; it makes
-- one table (the list it returns, which the caller may keep) and, for a
-- select function, the list handed to it.

local breaker = require "aigw.engine.balancer.breaker"
local memzone = require "aigw.engine.balancer.memzone"
local strategies = require "aigw.engine.balancer.strategies"
local usage = require "aigw.usage"

local pairs, ipairs, error, tostring = pairs, ipairs, error, tostring
local sort, concat, format = table.sort, table.concat, string.format

-- Weight of a new latency sample in the moving averages.
local ALPHA = 0.3
-- Outcome classes that say the target is unwell (not the request).
local BREAKER_CLASSES = { connect = true, timeout = true, ["5xx"] = true, stream = true }
-- How long a half-open probe holds its lease when the target has no timeout.
local PROBE_LEASE = 60

local M = {}

local group = {}
group.__index = group

local balancer = {}
balancer.__index = balancer

local function health_key(provider)
  return "r:h:" .. provider
end

local function new_group(b, alias, m, opts)
  local g = setmetatable({
    alias = alias, targets = m.targets, recs = {}, index = {}, n = #m.targets,
    strategy = m.strategy, select = m.select, breaker = m.breaker,
    explore = m.explore or opts.explore or 0.05,
    zone = b.zone, now = b.now, random = b.random,
    no_target = "no healthy target for model '" .. alias .. "'",
    -- scratch, reused by every plan() (which never yields)
    ok = {}, av = {}, score = {},
    -- per-worker strategy state
    cw = {}, cw_tied = {}, rr = 0,
  }, group)
  g.order = m.select and strategies.select or strategies[m.strategy]
  if not g.order then error("model '" .. alias .. "': unknown strategy " .. tostring(m.strategy), 2) end
  local score = g.score
  g.by_score = function(a, c)
    local sa, sc = score[a], score[c]
    if sa ~= sc then return sa < sc end
    return a < c
  end
  g.by_weight, g.by_priority = {}, {}
  for i, t in ipairs(m.targets) do
    -- Short keys (the zone hashes every key on every call): a hash of
    -- alias and target, the same in every worker and across reloads.
    local p = format("r:%08x:", strategies.hash(alias .. "|" .. t.key) % 4294967296)
    local price = usage.price(t.model, opts.prices)
    g.recs[i] = {
      weight = t.weight, priority = t.priority, hash = strategies.hash(t.key),
      price_in = price and (price.input or 0), price_out = price and (price.output or 0),
      lease = t.timeout or PROBE_LEASE,
      k_req = p .. "n", k_fail = p .. "e", k_inflight = p .. "i", k_ttfb = p .. "t", k_total = p .. "l",
      k_consec = p .. "c", k_open = p .. "o", k_probe = p .. "p", k_window = p .. "w",
      -- Providers without an active check are never marked down: plan()
      -- does not read their key (opts.checked: nil means every provider).
      k_health = (not opts.checked or opts.checked[t.provider]) and health_key(t.provider) or nil,
    }
    g.index[t] = i
    g.cw[i], g.cw_tied[i] = 0, 0
    g.by_weight[i], g.by_priority[i] = i, i
  end
  local recs = g.recs
  sort(g.by_weight, function(a, c)
    if recs[a].weight ~= recs[c].weight then return recs[a].weight > recs[c].weight end
    return a < c
  end)
  sort(g.by_priority, function(a, c)
    if recs[a].priority ~= recs[c].priority then return recs[a].priority < recs[c].priority end
    return a < c
  end)
  return g
end

-- conf_models: the normalised conf.models. opts (all optional): zone (an
-- aigw.shared zone; without one, a zone in this worker's memory), now
-- (seconds; aigw.monotonic), random (in [0, 1); math.random), prices
-- (conf.prices), explore (for aliases whose config has none), checked
-- (provider name -> true when it has an active health check; only those
-- can be marked down; nil: all may be).
function M.new(conf_models, opts)
  opts = opts or {}
  local b = setmetatable({ groups = {} }, balancer)
  b.now = opts.now or require("aigw").monotonic
  b.random = opts.random or math.random
  b.zone = opts.zone or memzone.new(b.now)
  b.aliases = {}
  for alias, m in pairs(conf_models) do
    b.groups[alias] = new_group(b, alias, m, opts)
    b.aliases[#b.aliases + 1] = alias
  end
  sort(b.aliases)
  return b
end

-- "closed", "open" or "half_open" ("closed" when the alias has no breaker).
local function breaker_state(g, rec, now)
  if not g.breaker then return "closed" end
  return breaker.state(g.zone, rec, now)
end

-- The targets to try, in order (a new table), or nil, "no healthy target
-- for model '<alias>'". Left out: targets whose provider failed its health
-- check and targets whose breaker is open. A half-open target goes first,
-- as the probe, for the one request that wins its lease; the others skip it.
-- With info.sticky_key the order is by rendezvous hashing of that key,
-- whatever the strategy. Raises when a select function fails or returns
-- something that is not one of its targets.
function group:plan(ctx, info)
  local zone, recs, ok, av = self.zone, self.recs, self.ok, self.av
  local now = self.now()
  local m, probe = 0, nil
  for i = 1, self.n do
    local rec = recs[i]
    local can = false
    if not rec.k_health or zone:get(rec.k_health) ~= 0 then
      local state = breaker_state(self, rec, now)
      if state == "closed" then
        can = true
      elseif state == "half_open" and probe == nil and breaker.try_probe(zone, rec) then
        probe = i
      end
    end
    ok[i] = can
    if can then
      m = m + 1
      av[m] = i
    end
  end
  for j = m + 1, self.n do av[j] = nil end
  if m == 0 and probe == nil then return nil, self.no_target end
  local out = {}
  if probe then out[1] = self.targets[probe] end
  if m > 0 then
    local key = info and info.sticky_key
    if key then
      strategies.sticky(self, av, m, key, out)
    else
      self.order(self, av, m, info, out, ctx)
    end
  end
  return out
end

local function rec_of(g, target, method)
  local i = g.index[target]
  if not i then
    error("bad argument #1 to '" .. method .. "' (a target of model '" .. g.alias .. "' expected)", 3)
  end
  return g.recs[i]
end

-- An attempt on `target` starts: one more request, one more in flight.
function group:begin(target)
  local rec = rec_of(self, target, "begin")
  self.zone:incr(rec.k_req, 1, 0)
  self.zone:incr(rec.k_inflight, 1, 0)
end

-- Read then write: two workers finishing at once may lose one sample,
-- which an average shrugs off.
local function ewma(zone, key, sample)
  local v = zone:get(key)
  zone:set(key, v and v + ALPHA * (sample - v) or sample)
end

-- An attempt on `target` ended. outcome = { ok = bool, class = "connect" |
-- "timeout" | "429" | "5xx" | "4xx" | "context_length" | "stream" |
-- "client" | nil, ttfb = seconds, total = seconds }. A success feeds the
-- latency averages and closes a half-open breaker; a failure that is not
-- the client's counts, and the breaker hears it when its class says the
-- target is unwell.
function group:finish(target, outcome)
  local rec = rec_of(self, target, "finish")
  local zone = self.zone
  zone:incr(rec.k_inflight, -1, 0)
  local conf = self.breaker
  if outcome.ok then
    if outcome.ttfb then ewma(zone, rec.k_ttfb, outcome.ttfb) end
    if outcome.total then ewma(zone, rec.k_total, outcome.total) end
    if conf then breaker.success(zone, rec, conf, self.now()) end
    return
  end
  if outcome.class ~= "client" then zone:incr(rec.k_fail, 1, 0) end
  if not conf then return end
  local now = self.now()
  if BREAKER_CLASSES[outcome.class] then
    breaker.failure(zone, rec, conf, now)
  elseif breaker.state(zone, rec, now) == "half_open" then
    -- A probe that learnt nothing (a 429, the client left): let the next
    -- request probe instead of waiting for the lease to lapse.
    zone:delete(rec.k_probe)
  end
end

-- The active health check's verdict on a provider, for every worker.
function balancer:set_health(provider, up)
  self.zone:set(health_key(provider), up and 1 or 0)
end

-- false once the health check said down; true otherwise (never checked too).
function balancer:health(provider)
  return self.zone:get(health_key(provider)) ~= 0
end

-- One row per target, by alias then target order.
function balancer:status()
  local rows, zone, now = {}, self.zone, self.now()
  for _, alias in ipairs(self.aliases) do
    local g = self.groups[alias]
    for i, t in ipairs(g.targets) do
      local rec = g.recs[i]
      local inflight = zone:get(rec.k_inflight) or 0
      local ttfb, total = zone:get(rec.k_ttfb), zone:get(rec.k_total)
      rows[#rows + 1] = {
        alias = alias, target = i, provider = t.provider, model = t.model, key = t.key, weight = t.weight,
        requests = zone:get(rec.k_req) or 0, failures = zone:get(rec.k_fail) or 0,
        inflight = inflight > 0 and inflight or 0,
        ttfb_ms = ttfb and ttfb * 1000, latency_ms = total and total * 1000,
        breaker = breaker_state(g, rec, now), healthy = not rec.k_health or zone:get(rec.k_health) ~= 0,
      }
    end
  end
  return rows
end

-- Prometheus's exposition format: backslash, double quote and newline
-- escaped in label values.
local function label(v)
  return (v:gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local BREAKER_VALUE = { closed = 0, open = 1, half_open = 2 }
local FAMILIES = {
  { "aigw_target_requests_total", "counter", "Attempts sent to the target.",
    function(r) return r.requests end },
  { "aigw_target_failures_total", "counter", "Attempts on the target that failed (not counting the client's).",
    function(r) return r.failures end },
  { "aigw_target_inflight", "gauge", "Attempts on the target in progress.",
    function(r) return r.inflight end },
  { "aigw_target_ttfb_seconds", "gauge", "Moving average of the target's time to first byte.",
    function(r) return r.ttfb_ms and r.ttfb_ms / 1000 end },
  { "aigw_target_latency_seconds", "gauge", "Moving average of the target's total response time.",
    function(r) return r.latency_ms and r.latency_ms / 1000 end },
  { "aigw_target_breaker_state", "gauge", "Circuit breaker: 0 closed, 1 open, 2 half-open.",
    function(r) return BREAKER_VALUE[r.breaker] end },
  { "aigw_target_healthy", "gauge", "1 unless the provider's active health check says down.",
    function(r) return r.healthy and 1 or 0 end },
}

-- The status rows as Prometheus text (a family's HELP and TYPE lines, then
-- one sample per target; no sample for an average with no data yet).
function balancer:metrics()
  local rows = self:status()
  local labels = {}
  for i, r in ipairs(rows) do
    -- target (its position in the alias) keeps two targets with the same
    -- provider and model apart: a series must be unique.
    labels[i] = format('{alias="%s",target="%d",provider="%s",model="%s"}', label(r.alias), r.target,
                       label(r.provider), label(r.model))
  end
  local lines = {}
  for _, f in ipairs(FAMILIES) do
    lines[#lines + 1] = "# HELP " .. f[1] .. " " .. f[3]
    lines[#lines + 1] = "# TYPE " .. f[1] .. " " .. f[2]
    for i, r in ipairs(rows) do
      local v = f[4](r)
      if v then lines[#lines + 1] = f[1] .. labels[i] .. " " .. format("%.14g", v) end
    end
  end
  return concat(lines, "\n") .. "\n"
end

-- For GET /ready: true when there is no alias, or when some alias target
-- can take traffic (healthy, breaker not open).
function balancer:ready()
  local now = self.now()
  if #self.aliases == 0 then return true end
  for _, g in pairs(self.groups) do
    for _, rec in ipairs(g.recs) do
      if (not rec.k_health or self.zone:get(rec.k_health) ~= 0) and breaker_state(g, rec, now) ~= "open" then
        return true
      end
    end
  end
  return false
end

return M

-- aigw.engine.balancer's circuit breakers: per target, shared through the zone,
-- on a clock the spec moves.

local h = require "aigw.test.helpers"
local memzone = require "aigw.engine.balancer.memzone"
local F = dofile(h.prefix .. "/spec/support/balancer_fixtures.lua")

-- Two targets by priority: "a" first, "b" the fallback.
local function pair(breaker, opts)
  return F.build({ strategy = "priority", breaker = breaker,
                   targets = { { provider = "mock", model = "a", timeout = 20 }, { provider = "mock", model = "b" } } },
                 opts)
end

local function attempt(f, i, outcome)
  local t = f.g.targets[i]
  f.g:begin(t)
  f.g:finish(t, outcome)
end

local FAIL = { ok = false, class = "5xx" }
local OK = { ok = true, ttfb = 0.1, total = 0.2 }

describe("aigw.engine.balancer breaker", function()
  it("opens after `failures` failures in a row, and leaves the target out while open", function()
    local f = pair({ failures = 3, cooldown = 10 })
    attempt(f, 1, FAIL)
    attempt(f, 1, { ok = false, class = "connect" })
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
    attempt(f, 1, { ok = false, class = "timeout" })
    assert.equal("open", f.b:status()[1].breaker)
    assert.same({ "b" }, F.models(f.g:plan({}, {})))
    f.clock.t = f.clock.t + 9.9
    assert.same({ "b" }, F.models(f.g:plan({}, {})))
  end)

  it("a success in between starts the count again", function()
    local f = pair({ failures = 3 })
    attempt(f, 1, FAIL)
    attempt(f, 1, FAIL)
    attempt(f, 1, OK)
    attempt(f, 1, FAIL)
    attempt(f, 1, { ok = false, class = "stream" })
    assert.equal("closed", f.b:status()[1].breaker)
    attempt(f, 1, FAIL)
    assert.equal("open", f.b:status()[1].breaker)
  end)

  it("after the cooldown exactly one request probes; success closes it", function()
    local f = pair({ failures = 1, cooldown = 10 })
    attempt(f, 1, FAIL)
    f.clock.t = f.clock.t + 10
    assert.equal("half_open", f.b:status()[1].breaker)
    local probe = f.g:plan({}, {})
    assert.same({ "a", "b" }, F.models(probe))
    assert.same({ "b" }, F.models(f.g:plan({}, {})))     -- the probe is taken
    assert.same({ "b" }, F.models(f.g:plan({}, {})))
    f.g:begin(probe[1])
    f.g:finish(probe[1], OK)
    assert.equal("closed", f.b:status()[1].breaker)
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
  end)

  it("forgets the latency averages from before it opened", function()
    local f = pair({ failures = 1, cooldown = 10 })
    attempt(f, 1, OK)
    assert.equal(100, f.b:status()[1].ttfb_ms)
    attempt(f, 1, FAIL)
    assert.is_nil(f.b:status()[1].ttfb_ms)
    f.clock.t = f.clock.t + 10
    f.g:plan({}, {})
    attempt(f, 1, { ok = true, ttfb = 0.5 })
    assert.equal(500, f.b:status()[1].ttfb_ms)
  end)

  it("a failed probe opens it for another cooldown", function()
    local f = pair({ failures = 1, cooldown = 10 })
    attempt(f, 1, FAIL)
    f.clock.t = f.clock.t + 10
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
    attempt(f, 1, FAIL)
    assert.equal("open", f.b:status()[1].breaker)
    f.clock.t = f.clock.t + 9
    assert.same({ "b" }, F.models(f.g:plan({}, {})))
    f.clock.t = f.clock.t + 1
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
  end)

  it("a probe that learnt nothing (429, the client left) lets the next request probe", function()
    local f = pair({ failures = 1, cooldown = 10 })
    attempt(f, 1, FAIL)
    f.clock.t = f.clock.t + 10
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
    attempt(f, 1, { ok = false, class = "client" })
    assert.equal("half_open", f.b:status()[1].breaker)
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
  end)

  it("a probe that never finishes loses its lease after the target's timeout", function()
    local f = pair({ failures = 1, cooldown = 10 }, { memory = true })   -- TTLs on the spec's clock
    attempt(f, 1, FAIL)
    f.clock.t = f.clock.t + 10
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
    f.clock.t = f.clock.t + 19
    assert.same({ "b" }, F.models(f.g:plan({}, {})))
    f.clock.t = f.clock.t + 1
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
  end)

  it("opens on the error rate within a window once there are min_requests", function()
    local f = pair({ failures = 100, error_rate = 0.5, min_requests = 10, window = 30 })
    f.clock.t = 3000   -- the start of a window
    for _ = 1, 4 do
      attempt(f, 1, OK)
      attempt(f, 1, FAIL)
    end
    attempt(f, 1, OK)
    assert.equal("closed", f.b:status()[1].breaker)   -- 9 requests: too few to judge
    attempt(f, 1, FAIL)
    assert.equal("open", f.b:status()[1].breaker)     -- 5 of 10 failed
  end)

  it("counts the error rate per window", function()
    local f = pair({ failures = 100, error_rate = 0.5, min_requests = 10, window = 30 })
    f.clock.t = 3000
    for _ = 1, 9 do attempt(f, 1, FAIL) end           -- too few requests to judge
    f.clock.t = 3030                                  -- a new window: those nine are gone
    attempt(f, 1, FAIL)
    for _ = 1, 9 do attempt(f, 1, OK) end
    attempt(f, 1, FAIL)
    assert.equal("closed", f.b:status()[1].breaker)   -- 2 of 11; one window over both would have opened at the tenth failure
  end)

  it("429, 4xx, context_length and the client's failures do not count", function()
    local f = pair({ failures = 2 })
    for _, class in ipairs({ "429", "4xx", "context_length", "client", "429", "4xx" }) do
      attempt(f, 1, { ok = false, class = class })
    end
    local row = f.b:status()[1]
    assert.equal("closed", row.breaker)
    assert.equal(5, row.failures)     -- counted as failures, but not the client's
    assert.equal(0, row.inflight)
  end)

  it("breaker = false never opens", function()
    local f = pair(false)
    for _ = 1, 50 do attempt(f, 1, FAIL) end
    assert.equal("closed", f.b:status()[1].breaker)
    assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
  end)

  it("each target has its own breaker", function()
    local f = pair({ failures = 1 })
    attempt(f, 2, FAIL)
    assert.same({ "a" }, F.models(f.g:plan({}, {})))
    assert.equal("open", f.b:status()[2].breaker)
    assert.equal("closed", f.b:status()[1].breaker)
  end)

  it("all open: nil and the message; ready turns false", function()
    local f = pair({ failures = 1 })
    attempt(f, 1, FAIL)
    attempt(f, 2, FAIL)
    assert.same({ nil, "no healthy target for model '" .. f.alias .. "'" }, { f.g:plan({}, {}) })
    assert.is_false(f.b:ready())
  end)
end)

describe("aigw.engine.balancer.memzone", function()
  it("follows aigw.shared's semantics, with TTLs on the given clock", function()
    local clock = F.clock(0)
    local z = memzone.new(clock.now)
    assert.is_true(z:set("k", "v", 5))
    assert.equal("v", z:get("k"))
    assert.same({ nil, "exists" }, { z:add("k", 1) })
    clock.t = 5
    assert.is_nil(z:get("k"))
    assert.is_true(z:add("k", 1))
    assert.same({ nil, "not found" }, { z:incr("n", 1) })
    assert.equal(3, z:incr("n", 3, 0, 10))
    clock.t = 14
    assert.equal(4, z:incr("n", 1, 0, 100))   -- an existing key keeps its TTL
    clock.t = 15
    assert.is_nil(z:get("n"))
    z:set("s", "text")
    assert.same({ nil, "not a number" }, { z:incr("s", 1) })
    assert.is_true(z:delete("k"))
    assert.is_nil(z:get("k"))
    z:set("forever", 1)
    clock.t = 1e9
    assert.equal(1, z:get("forever"))
  end)
end)

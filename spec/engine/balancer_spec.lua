-- aigw.engine.balancer: the strategies' orders, sticky routing, health, status,
-- metrics and readiness. Deterministic: a seeded random source and a clock
-- the spec moves (spec/support/balancer_fixtures.lua).

local h = require "aigw.test.helpers"
local balancer = require "aigw.engine.balancer"
local F = dofile(h.prefix .. "/spec/support/balancer_fixtures.lua")

local function targets(spec)
  local t = {}
  for i, s in ipairs(spec) do
    t[i] = { provider = s.provider or "mock", model = s[1], weight = s.weight, priority = s.priority }
  end
  return t
end

describe("aigw.engine.balancer", function()
  describe("weighted", function()
    it("follows nginx's smooth weighted round-robin: weights 5, 1, 1 give a a b a c a a", function()
      local g = F.build({ targets = targets({ { "a", weight = 5 }, { "b" }, { "c" } }) }).g
      local seq = {}
      for i = 1, 14 do seq[i] = g:plan({}, {})[1].model end
      assert.equal("aabacaaaabacaa", table.concat(seq))
    end)

    it("over 10000 picks each target's share is its weight's share (within 2%)", function()
      local g = F.build({ targets = targets({ { "a", weight = 5 }, { "b", weight = 3 }, { "c", weight = 2 } }) }).g
      local count = F.picks(g, 10000)
      assert.near(5000, count.a, 200)
      assert.near(3000, count.b, 200)
      assert.near(2000, count.c, 200)
    end)

    it("is the default strategy, and falls back by descending weight then list order", function()
      local f = F.build({ targets = targets({ { "a", weight = 1 }, { "b", weight = 3 }, { "c", weight = 3 } }) })
      assert.equal("weighted", f.g.strategy)
      local list = f.g:plan({}, {})
      assert.same({ "b", "c", "a" }, F.models(list))
      list = f.g:plan({}, {})
      assert.same({ "c", "b", "a" }, F.models(list))
    end)
  end)

  describe("round-robin", function()
    it("cycles through the targets, the rest following in rotation order", function()
      local g = F.build({ strategy = "round-robin", targets = targets({ { "a" }, { "b" }, { "c" } }) }).g
      assert.same({ "a", "b", "c" }, F.models(g:plan({}, {})))
      assert.same({ "b", "c", "a" }, F.models(g:plan({}, {})))
      assert.same({ "c", "a", "b" }, F.models(g:plan({}, {})))
      assert.same({ "a", "b", "c" }, F.models(g:plan({}, {})))
    end)
  end)

  describe("least-busy", function()
    it("picks the target with fewer requests in flight, following begin and finish", function()
      local g = F.build({ strategy = "least-busy", targets = targets({ { "a" }, { "b" } }) }).g
      local a, b = g.targets[1], g.targets[2]
      g:begin(a)
      assert.same({ "b", "a" }, F.models(g:plan({}, {})))
      g:begin(b)
      g:begin(b)
      assert.same({ "a", "b" }, F.models(g:plan({}, {})))
      g:finish(b, { ok = true })
      g:finish(b, { ok = true })
      assert.same({ "b", "a" }, F.models(g:plan({}, {})))
      g:finish(a, { ok = true })
    end)

    it("shares load between idle targets", function()
      local g = F.build({ strategy = "least-busy", targets = targets({ { "a" }, { "b" } }) }).g
      local count = F.picks(g, 100)
      assert.same({ a = 50, b = 50 }, count)
    end)
  end)

  describe("lowest-latency", function()
    local function sample(g, i, ttfb, n)
      for _ = 1, n or 1 do
        g:begin(g.targets[i])
        g:finish(g.targets[i], { ok = true, ttfb = ttfb, total = ttfb * 4 })
      end
    end

    it("tries targets with no sample first, then prefers the fastest, and follows changes", function()
      local g = F.build({ strategy = "lowest-latency", explore = 0,
                          targets = targets({ { "a" }, { "b" }, { "c" } }) }).g
      sample(g, 1, 0.5)
      assert.same({ "b", "c", "a" }, F.models(g:plan({}, {})))
      sample(g, 2, 0.1)
      sample(g, 3, 0.3)
      assert.same({ "b", "c", "a" }, F.models(g:plan({}, {})))
      sample(g, 2, 2.0, 5)    -- b slows down: its average passes the others'
      assert.same({ "c", "a", "b" }, F.models(g:plan({}, {})))
    end)

    it("uses total time when no first byte was timed", function()
      local g = F.build({ strategy = "lowest-latency", explore = 0, targets = targets({ { "a" }, { "b" } }) }).g
      g:finish(g.targets[1], { ok = true, total = 3 })
      g:finish(g.targets[2], { ok = true, total = 1 })
      assert.same({ "b", "a" }, F.models(g:plan({}, {})))
    end)

    it("explores another target at about the explore rate (0.1 +- 0.01 over 10000 picks)", function()
      local g = F.build({ strategy = "lowest-latency", explore = 0.1, targets = targets({ { "a" }, { "b" } }) },
                        { seed = 12345 }).g
      sample(g, 1, 0.1)
      sample(g, 2, 0.9)
      local count = F.picks(g, 10000)
      assert.near(1000, count.b, 100)
    end)
  end)

  describe("cost", function()
    local prices = { cheap = { input = 1, output = 2 }, dear = { input = 5, output = 10 } }

    it("picks the cheapest by the price table; a model with no price goes last", function()
      local g = F.build({ strategy = "cost", targets = targets({ { "unknown" }, { "dear" }, { "cheap" } }) },
                        { prices = prices }).g
      assert.same({ "cheap", "dear", "unknown" }, F.models(g:plan({}, { prompt_tokens = 100 })))
    end)

    it("weighs prompt tokens at the input price and max_tokens (256 by default) at the output price", function()
      local g = F.build({ strategy = "cost", targets = targets({ { "inp" }, { "outp" } }) },
                        { prices = { inp = { input = 10, output = 0 }, outp = { input = 0, output = 10 } } }).g
      assert.same({ "outp", "inp" }, F.models(g:plan({}, { prompt_tokens = 1000, max_tokens = 10 })))
      assert.same({ "inp", "outp" }, F.models(g:plan({}, { prompt_tokens = 100 })))
      assert.same({ "outp", "inp" }, F.models(g:plan({}, { prompt_tokens = 300 })))
    end)

    it("uses the built-in prices for known models", function()
      local g = F.build({ strategy = "cost", targets = targets({ { "gpt-4o" }, { "gpt-4o-mini" } }) }).g
      assert.same({ "gpt-4o-mini", "gpt-4o" }, F.models(g:plan({}, { prompt_tokens = 10 })))
    end)

    it("moves to the next cheapest when the cheapest cannot take traffic", function()
      local pc = F.name("pc")
      local f = F.build({ strategy = "cost", targets = { { provider = pc, model = "cheap" },
                                                         { provider = "mock", model = "dear" } } },
                        { prices = prices })
      f.b:set_health(pc, false)
      assert.same({ "dear" }, F.models(f.g:plan({}, { prompt_tokens = 10 })))
    end)
  end)

  describe("priority", function()
    it("orders by ascending priority, then list order, and falls back in that order", function()
      local pb = F.name("pb")
      local f = F.build({ strategy = "priority", targets = {
        { provider = "mock", model = "a", priority = 2 }, { provider = pb, model = "b", priority = 1 },
        { provider = "mock", model = "c", priority = 2 }, { provider = "mock", model = "d" } } })
      assert.same({ "b", "a", "c", "d" }, F.models(f.g:plan({}, {})))
      f.b:set_health(pb, false)
      assert.same({ "a", "c", "d" }, F.models(f.g:plan({}, {})))
    end)
  end)

  describe("select", function()
    local function with_select(fn)
      return F.build({ select = fn, targets = targets({ { "a" }, { "b" }, { "c", priority = 0 } }) })
    end

    it("takes a target; the others follow by priority", function()
      local seen
      local f = with_select(function(list, ctx)
        seen = ctx
        return list[2]
      end)
      local ctx = {}
      assert.same({ "b", "c", "a" }, F.models(f.g:plan(ctx, {})))
      assert.equal(ctx, seen)
      assert.equal("select", f.g.strategy)
    end)

    it("takes an index, or an ordered list of targets and indices", function()
      assert.same({ "a", "c", "b" }, F.models(with_select(function() return 1 end).g:plan({}, {})))
      assert.same({ "b", "a", "c" },
        F.models(with_select(function(list) return { list[2], 1 } end).g:plan({}, {})))
    end)

    it("keeps a half-open probe first, and chooses among the others", function()
      local f = F.build({ select = function(list) return list[#list] end, breaker = { failures = 1, cooldown = 10 },
                          targets = targets({ { "a" }, { "b" }, { "c" } }) })
      local first = f.g:plan({}, {})
      f.g:begin(first[1])
      f.g:finish(first[1], { ok = false, class = "5xx" })   -- c opens
      assert.same({ "b", "a" }, F.models(f.g:plan({}, {})))
      f.clock.t = f.clock.t + 10
      assert.same({ "c", "b", "a" }, F.models(f.g:plan({}, {})))   -- c probes, then select's pick
    end)

    it("chooses from what could take traffic when it was called, even if it waits", function()
      local f
      local inner
      f = F.build({ select = function(list)
        -- Another request plans meanwhile (as while this one waits on
        -- aigw.http), with a target gone: this request's choice stands.
        if not inner then
          inner = true
          f.b:set_health("mock", false)
          assert.is_nil(f.g:plan({}, {}))
          f.b:set_health("mock", true)
        end
        return list[2]
      end, targets = targets({ { "a" }, { "b" } }) })
      assert.same({ "b", "a" }, F.models(f.g:plan({}, {})))
    end)

    it("nil leaves the order to priority", function()
      assert.same({ "c", "a", "b" }, F.models(with_select(function() end).g:plan({}, {})))
    end)

    it("an error in the function, or a result that is not a target, raises naming the alias", function()
      local f = with_select(function() error("boom", 0) end)
      assert.has_error(function() f.g:plan({}, {}) end, "model '" .. f.alias .. "': select failed: boom")
      f = with_select(function() return 7 end)
      assert.has_error(function() f.g:plan({}, {}) end, "model '" .. f.alias .. "': select returned index 7: expected 1 to 3")
      f = with_select(function() return { provider = "mock", model = "a" } end)
      local ok, err = pcall(f.g.plan, f.g, {}, {})
      assert.is_false(ok)
      assert.matches("model '" .. f.alias .. "': select returned table: .*expected a target from the list", err)
    end)
  end)

  describe("sticky", function()
    local function key_targets(g, n, prefix)
      local owner = {}
      for k = 1, n do owner[k] = g:plan({}, { sticky_key = prefix .. k })[1].model end
      return owner
    end

    it("keeps one key on one target", function()
      local g = F.build({ sticky = { header = "x-session-id" }, targets = targets({ { "a" }, { "b" }, { "c" } }) }).g
      local first = g:plan({}, { sticky_key = "session-1" })[1].model
      for _ = 1, 50 do assert.equal(first, g:plan({}, { sticky_key = "session-1" })[1].model) end
    end)

    it("spreads keys by weight (within 2% over 10000 keys)", function()
      local g = F.build({ targets = targets({ { "a" }, { "b" }, { "c", weight = 2 } }) }).g
      local count = {}
      for _, m in ipairs(key_targets(g, 10000, "user-")) do count[m] = (count[m] or 0) + 1 end
      assert.near(2500, count.a, 200)
      assert.near(2500, count.b, 200)
      assert.near(5000, count.c, 200)
    end)

    it("moves only the keys of a target that leaves, and moves them back when it returns", function()
      local pb = F.name("pb")
      local f = F.build({ targets = { { provider = "mock", model = "a" }, { provider = pb, model = "b" },
                                      { provider = "mock", model = "c" } } })
      local before = key_targets(f.g, 3000, "k")
      f.b:set_health(pb, false)
      local during = key_targets(f.g, 3000, "k")
      local moved = 0
      for k = 1, 3000 do
        if before[k] == "b" then
          moved = moved + 1
          assert.is_true(during[k] == "a" or during[k] == "c")
        else
          assert.equal(before[k], during[k])
        end
      end
      assert.is_true(moved > 800)
      f.b:set_health(pb, true)
      assert.same(before, key_targets(f.g, 3000, "k"))
    end)

    it("is the same order in every worker and after restarts (a fixed hash)", function()
      local strategies = require "aigw.engine.balancer.strategies"
      assert.equal(strategies.hash("session-1"), strategies.hash("session-1"))
      assert.not_equal(strategies.hash("session-1"), strategies.hash("session-2"))
      -- FNV-1a 32 then MurmurHash3's fmix32, as Python computes them
      -- (FNV-1a of "a" is 0xe40c292c): a change to the hash would show here
      assert.equal(444641715, strategies.hash("a"))
      assert.equal(599268235, strategies.hash("session-1"))
    end)
  end)

  describe("health", function()
    it("a provider marked down is left out until it is marked up", function()
      local pa = F.name("pa")
      local f = F.build({ strategy = "priority", targets = { { provider = pa, model = "a" },
                                                             { provider = "mock", model = "b" } } })
      assert.is_true(f.b:health(pa))
      f.b:set_health(pa, false)
      assert.is_false(f.b:health(pa))
      assert.same({ "b" }, F.models(f.g:plan({}, {})))
      f.b:set_health(pa, true)
      assert.same({ "a", "b" }, F.models(f.g:plan({}, {})))
    end)

    it("nothing left: nil and a message naming the alias; not ready", function()
      local pa = F.name("pa")
      local f = F.build({ provider = pa, model = "a" })
      assert.is_true(f.b:ready())
      f.b:set_health(pa, false)
      assert.same({ nil, "no healthy target for model '" .. f.alias .. "'" }, { f.g:plan({}, {}) })
      assert.is_false(f.b:ready())
      f.b:set_health(pa, true)
    end)

    it("ready with no aliases", function()
      assert.is_true(balancer.new({}, { now = function() return 0 end }):ready())
    end)
  end)

  it("a one-target alias (the original form) always gives that target", function()
    local f = F.build({ provider = "mock", model = "only" })
    assert.same({ "only" }, F.models(f.g:plan({}, {})))
    assert.same({ "only" }, F.models(f.g:plan({}, { sticky_key = "k" })))
  end)

  it("returns a new list each time", function()
    local g = F.build({ targets = targets({ { "a" }, { "b" } }) }).g
    assert.not_equal(g:plan({}, {}), g:plan({}, {}))
  end)

  it("begin and finish refuse a target of another alias", function()
    local g = F.build({ targets = targets({ { "a" } }) }).g
    assert.has_error(function() g:begin({ provider = "mock", model = "a" }) end,
      "bad argument #1 to 'begin' (a target of model '" .. g.alias .. "' expected)")
  end)

  describe("status and metrics", function()
    it("status has one row per target, by alias then target order", function()
      local f = F.build({ targets = targets({ { "a", weight = 2 }, { "b" } }) }, { alias = F.name("s") })
      local a = f.g.targets[1]
      f.g:begin(a)
      f.g:begin(a)
      f.g:finish(a, { ok = true, ttfb = 0.25, total = 1.5 })
      f.g:finish(a, { ok = false, class = "429" })
      f.g:begin(a)
      local rows = f.b:status()
      assert.equal(2, #rows)
      assert.same({ alias = f.alias, target = 1, provider = "mock", model = "a", key = "mock/a#1", weight = 2,
                    requests = 3, failures = 1, inflight = 1, ttfb_ms = 250, latency_ms = 1500,
                    breaker = "closed", healthy = true }, rows[1])
      assert.same({ alias = f.alias, target = 2, provider = "mock", model = "b", key = "mock/b#2", weight = 1,
                    requests = 0, failures = 0, inflight = 0, breaker = "closed", healthy = true }, rows[2])
      f.g:finish(a, { ok = false, class = "client" })
      assert.equal(1, f.b:status()[1].failures)
    end)

    it("metrics is Prometheus text with HELP and TYPE lines and escaped labels", function()
      -- (an alias cannot hold a newline: config.lua refuses control characters)
      local f = F.build({ targets = targets({ { "a" }, { "b" } }) }, { alias = 'we"ird\\alias' .. F.name("") })
      f.g:begin(f.g.targets[1])
      f.g:finish(f.g.targets[1], { ok = true, ttfb = 0.5, total = 2 })
      local text = f.b:metrics()
      assert.equal("\n", text:sub(-1))
      local families, samples = {}, 0
      for line in text:gmatch("[^\n]+") do
        local kind, name = line:match("^# (%u+) ([%w_]+) ")
        if kind then
          families[name] = families[name] or {}
          families[name][kind] = true
        else
          local n, labels, v = line:match('^([%a_][%w_]*)(%b{}) (%S+)$')
          assert(n, "not a sample line: " .. line)
          assert.truthy(tonumber(v))
          assert.truthy(families[n] and families[n].TYPE)
          assert.matches('^{alias="we\\"ird\\\\alias_%d+",target="[12]",provider="mock",model="[ab]"}$', labels)
          samples = samples + 1
        end
      end
      for _, name in ipairs({ "aigw_target_requests_total", "aigw_target_failures_total", "aigw_target_inflight",
                              "aigw_target_ttfb_seconds", "aigw_target_latency_seconds",
                              "aigw_target_breaker_state", "aigw_target_healthy" }) do
        assert.same({ HELP = true, TYPE = true }, families[name])
      end
      -- 5 families with a sample per target, the two averages for a only
      assert.equal(5 * 2 + 2, samples)
      assert.matches('\naigw_target_ttfb_seconds{[^}]*model="a"} 0.5\n', text)
      assert.matches('\naigw_target_requests_total{[^}]*model="a"} 1\n', text)
      -- The same provider and model twice are still two series.
      local twice = F.build({ targets = targets({ { "a" }, { "a" } }) }).b:metrics()
      assert.matches('target="1",provider="mock",model="a"} 0\n', twice)
      assert.matches('target="2",provider="mock",model="a"} 0\n', twice)
    end)
  end)

  it("works without a shared zone (a zone in Lua memory)", function()
    local f = F.build({ strategy = "least-busy", targets = targets({ { "a" }, { "b" } }) }, { memory = true })
    f.g:begin(f.g.targets[1])
    assert.same({ "b", "a" }, F.models(f.g:plan({}, {})))
    assert.equal(1, f.b:status()[1].inflight)
  end)
end)

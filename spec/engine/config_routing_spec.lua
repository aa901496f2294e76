-- aigw.engine.config: model aliases with targets, routing defaults and provider
-- health checks.

local config = require "aigw.engine.config"

local PROVIDERS = {
  openai = { kind = "openai", base_url = "https://api.openai.com/v1" },
  anthropic = { kind = "anthropic", base_url = "https://api.anthropic.com" },
}

local function normalise(t)
  t.providers = t.providers or PROVIDERS
  return config.normalise("f.lua", t)
end

local function errmsg(t)
  local ok, err = pcall(normalise, t)
  assert.is_false(ok, "expected an error")
  return err
end

local DEFAULT_RETRY_ON = { connect = true, timeout = true, ["429"] = true, ["5xx"] = true }
local DEFAULT_BREAKER = { failures = 5, error_rate = 0.5, window = 30, min_requests = 10, cooldown = 30 }

describe("aigw.engine.config models and routing", function()
  it("normalises the one-target form to the full shape", function()
    local c = normalise({ models = { fast = { provider = "openai", model = "gpt-4o-mini" } } })
    assert.same({
      provider = "openai", model = "gpt-4o-mini", strategy = "weighted", explore = 0.05,
      targets = { { provider = "openai", model = "gpt-4o-mini", weight = 1, priority = 1, key = "openai/gpt-4o-mini#1" } },
      retry = { attempts = 1, on = DEFAULT_RETRY_ON, backoff = 0.1, max_backoff = 2, max_retry_after = 30 },
      breaker = DEFAULT_BREAKER,
    }, c.models.fast)
  end)

  it("normalises targets, filling defaults", function()
    local c = normalise({ models = { smart = {
      strategy = "least-busy",
      sticky = { header = "X-Session-Id" },
      targets = {
        { provider = "openai", model = "gpt-4o-mini", weight = 3, priority = 5, ttfb_timeout = "500ms", timeout = 30 },
        { provider = "anthropic", model = "claude-3-5-haiku-latest" },
      },
      retry = { on = { "connect", "context_length", "4xx" }, deadline = "1m" },
      breaker = { failures = 2, cooldown = "10s" },
    } } })
    local m = c.models.smart
    assert.equal("openai", m.provider)
    assert.equal("gpt-4o-mini", m.model)
    assert.equal("least-busy", m.strategy)
    assert.same({ header = "x-session-id" }, m.sticky)
    assert.same({ provider = "openai", model = "gpt-4o-mini", weight = 3, priority = 5, ttfb_timeout = 0.5,
                  timeout = 30, key = "openai/gpt-4o-mini#1" }, m.targets[1])
    assert.same({ provider = "anthropic", model = "claude-3-5-haiku-latest", weight = 1, priority = 2,
                  key = "anthropic/claude-3-5-haiku-latest#2" }, m.targets[2])
    assert.same({ attempts = 2, on = { connect = true, context_length = true, ["4xx"] = true }, backoff = 0.1,
                  max_backoff = 2, deadline = 60, max_retry_after = 30 }, m.retry)
    assert.same({ failures = 2, error_rate = 0.5, window = 30, min_requests = 10, cooldown = 10 }, m.breaker)
  end)

  it("keeps a select function and sticky by API key", function()
    local fn = function(targets) return targets[1] end
    local m = normalise({ models = { s = { select = fn, sticky = { api_key = true },
                                           targets = { { provider = "openai", model = "a" } } } } }).models.s
    assert.equal(fn, m.select)
    assert.equal("select", m.strategy)
    assert.same({ api_key = true }, m.sticky)
  end)

  it("gives each target a key unique in its alias, even for the same model twice", function()
    local m = normalise({ models = { s = { targets = { { provider = "openai", model = "a" },
                                                       { provider = "openai", model = "a" } } } } }).models.s
    assert.equal("openai/a#1", m.targets[1].key)
    assert.equal("openai/a#2", m.targets[2].key)
  end)

  it("applies routing's defaults to every alias, the alias's own fields overriding key by key", function()
    local c = normalise({
      routing = { retry = { attempts = 4, backoff = 0.5 }, breaker = { cooldown = 60 }, explore = 0.2 },
      models = {
        a = { provider = "openai", model = "x" },
        b = { provider = "openai", model = "y", retry = { backoff = 1 }, breaker = { failures = 1 }, explore = 0 },
        c = { provider = "openai", model = "z", breaker = false },
      },
    })
    assert.same({ attempts = 4, on = DEFAULT_RETRY_ON, backoff = 0.5, max_backoff = 2, max_retry_after = 30 },
                c.models.a.retry)
    assert.equal(60, c.models.a.breaker.cooldown)
    assert.equal(0.2, c.models.a.explore)
    assert.same({ attempts = 4, on = DEFAULT_RETRY_ON, backoff = 1, max_backoff = 2, max_retry_after = 30 },
                c.models.b.retry)
    assert.same({ failures = 1, error_rate = 0.5, window = 30, min_requests = 10, cooldown = 60 }, c.models.b.breaker)
    assert.equal(0, c.models.b.explore)
    assert.is_false(c.models.c.breaker)
  end)

  it("routing.breaker = false turns breakers off unless an alias sets its own", function()
    local c = normalise({ routing = { breaker = false }, models = {
      a = { provider = "openai", model = "x" },
      b = { provider = "openai", model = "y", breaker = { failures = 2 } },
    } })
    assert.is_false(c.models.a.breaker)
    assert.same({ failures = 2, error_rate = 0.5, window = 30, min_requests = 10, cooldown = 30 }, c.models.b.breaker)
  end)

  it("declares the aigw_routing zone (1 MB) when there are aliases, unless the config does", function()
    assert.is_nil(normalise({}).shared.aigw_routing)
    assert.equal(1048576, normalise({ models = { a = { provider = "openai", model = "x" } } }).shared.aigw_routing)
    assert.equal(4 * 1048576, normalise({ shared = { aigw_routing = "4m" },
                                          models = { a = { provider = "openai", model = "x" } } }).shared.aigw_routing)
  end)

  it("names the field in every error", function()
    local function model(m) return { models = { smart = m } } end
    local function two(t2) return model({ targets = { { provider = "openai", model = "a" }, t2 } }) end
    local cases = {
      { two({ provider = "openai", model = "b", weight = 0 }),
        "f.lua: models.smart.targets[2].weight: expected a number more than 0, got 0" },
      { two({ provider = "nope", model = "b" }),
        'f.lua: models.smart.targets[2].provider: expected the name of a configured provider, got "nope"' },
      { two({ provider = "openai", model = "" }),
        'f.lua: models.smart.targets[2].model: expected a model name (at most 256 bytes, no control characters), got ""' },
      -- echoed in x-aigw-model: nothing that could end a header line
      { two({ provider = "openai", model = "b\r\nSet-Cookie: x=1" }), "models.smart.targets[2].model: expected a model name" },
      { two({ provider = "openai", model = "b\0" }), "models.smart.targets[2].model: expected a model name" },
      { two({ provider = "openai", model = ("b"):rep(257) }), "models.smart.targets[2].model: expected a model name" },
      { { models = { ["s\nX: y"] = { provider = "openai", model = "a" } } },
        "f.lua: models: expected alias names that are model names (at most 256 bytes, no control characters)" },
      { { models = { [("s"):rep(257)] = { provider = "openai", model = "a" } } }, "f.lua: models: expected alias names" },
      { { providers = { openai = { kind = "openai", base_url = "http://127.0.0.1:1", models = { "a\tb" } } } },
        "providers.openai.models[1]: expected a model name (at most 256 bytes" },
      { two({ provider = "openai", model = "b", timeout = "soon" }),
        'f.lua: models.smart.targets[2].timeout: expected a duration in seconds, more than 0, got "soon"' },
      { two({ provider = "openai", model = "b", color = 1 }),
        'f.lua: models.smart.targets[2].color: expected one of provider, model, weight, priority, ttfb_timeout, timeout, got "color"' },
      { two("x"), 'f.lua: models.smart.targets[2]: expected a table { provider = ..., model = ... }, got "x"' },
      { model({ targets = {} }), "models.smart.targets: expected a list of { provider = ..., model = ... }" },
      { model({ strategy = "random", targets = { { provider = "openai", model = "a" } } }),
        'f.lua: models.smart.strategy: expected one of weighted, round-robin, least-busy, lowest-latency, cost, priority, got "random"' },
      { model({ select = "no.such.strategy", targets = { { provider = "openai", model = "a" } } }),
        "models.smart.select: expected a module that loads (module 'no.such.strategy' not found" },
      { model({ select = "aigw.json", targets = { { provider = "openai", model = "a" } } }),
        "models.smart.select: expected a module returning a function (targets, ctx) or a table with one named select" },
      { model({ select = 3, targets = { { provider = "openai", model = "a" } } }),
        "models.smart.select: expected a function (targets, ctx) or the name of a module with one" },
      { model({ select = print, strategy = "cost", targets = { { provider = "openai", model = "a" } } }),
        "models.smart.strategy: expected either strategy or select, not both" },
      { model({ targets = { { provider = "openai", model = "a" } }, extra = 1 }), 'models.smart.extra: expected one of targets' },
      { model({ provider = "openai", model = "a", weight = 2 }), 'models.smart.weight: expected one of provider, model' },
      { model({ provider = "openai", model = "a", retry = { on = { "connect", "500" } } }),
        'f.lua: models.smart.retry.on[2]: expected a list of connect, timeout, 429, 5xx, context_length, 4xx, got "500"' },
      { model({ provider = "openai", model = "a", retry = { attempts = 0 } }),
        "models.smart.retry.attempts: expected a whole number >= 1, got 0" },
      { model({ provider = "openai", model = "a", retry = { tries = 2 } }), "models.smart.retry.tries: expected one of attempts" },
      { model({ provider = "openai", model = "a", retry = { backoff = "x" } }), "models.smart.retry.backoff: expected a duration" },
      { model({ provider = "openai", model = "a", breaker = { cooldown = 0 } }),
        "models.smart.breaker.cooldown: expected a duration in seconds, more than 0, got 0" },
      { model({ provider = "openai", model = "a", breaker = { error_rate = 2 } }), "models.smart.breaker.error_rate: expected" },
      { model({ provider = "openai", model = "a", breaker = { open = 1 } }), "models.smart.breaker.open: expected one of failures" },
      { model({ provider = "openai", model = "a", breaker = true }), "models.smart.breaker: expected a table" },
      { model({ provider = "openai", model = "a", sticky = { header = "bad header" } }),
        'models.smart.sticky.header: expected a header name, got "bad header"' },
      { model({ provider = "openai", model = "a", sticky = { api_key = false } }), "models.smart.sticky.api_key: expected true" },
      { model({ provider = "openai", model = "a", sticky = { cookie = "x" } }), "models.smart.sticky.cookie: expected header or api_key" },
      { model({ provider = "openai", model = "a", explore = 1.5 }), "models.smart.explore: expected a number from 0 to 1" },
      { { routing = { explore = -1 } }, "f.lua: routing.explore: expected a number from 0 to 1, got -1" },
      { { routing = { retry = { on = "5xx" } } }, "routing.retry.on: expected a list of" },
      { { routing = { other = 1 } }, 'f.lua: routing.other: expected one of retry, breaker, explore, got "other"' },
      { { routing = 1 }, "f.lua: routing: expected a table" },
    }
    for _, case in ipairs(cases) do
      local err = errmsg(case[1])
      assert.equal(1, select(2, err:gsub(case[2]:gsub("%p", "%%%0"), "")), "got: " .. err)
    end
  end)

  describe("provider health_check", function()
    local function provider(hc)
      return normalise({ providers = { p = { kind = "openai", base_url = "http://127.0.0.1:1", health_check = hc } } })
    end

    it("fills defaults, converts durations and encodes a table body", function()
      assert.same({ path = "/models", method = "GET", interval = 10, timeout = 5, healthy = 2, unhealthy = 3 },
                  provider({ path = "/models" }).providers.p.health_check)
      local hc = provider({ path = "/chat/completions", method = "post", body = { model = "m", max_tokens = 1 },
                            interval = "1m", timeout = "500ms", healthy = 1, unhealthy = 5 }).providers.p.health_check
      assert.equal("POST", hc.method)
      assert.same({ model = "m", max_tokens = 1 }, require("aigw.json").decode(hc.body))
      assert.equal(60, hc.interval)
      assert.equal(0.5, hc.timeout)
      assert.equal(1, hc.healthy)
      assert.equal(5, hc.unhealthy)
      assert.equal("{}", provider({ path = "/x", body = "{}" }).providers.p.health_check.body)
      assert.is_nil(normalise({}).providers.openai.health_check)
    end)

    it("names the field in errors", function()
      local cases = {
        { { path = "models" }, 'providers.p.health_check.path: expected a path starting with /, got "models"' },
        { {}, "providers.p.health_check.path: expected a path starting with /, got nil" },
        { { path = "/m", method = "GE T" }, "providers.p.health_check.method: expected an HTTP method" },
        { { path = "/m", body = 1 }, "providers.p.health_check.body: expected a string or a table, got 1" },
        { { path = "/m", interval = 0 }, "providers.p.health_check.interval: expected a duration in seconds, more than 0" },
        { { path = "/m", healthy = 0.5 }, "providers.p.health_check.healthy: expected a whole number >= 1, got 0.5" },
        { { path = "/m", every = 1 }, 'providers.p.health_check.every: expected one of path, method, body' },
        { "yes", 'providers.p.health_check: expected a table' },
      }
      for _, case in ipairs(cases) do
        local ok, err = pcall(provider, case[1])
        assert.is_false(ok)
        assert.equal(1, select(2, err:gsub(case[2]:gsub("%p", "%%%0"), "")), "got: " .. err)
      end
    end)
  end)
end)

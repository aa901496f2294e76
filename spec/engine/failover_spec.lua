-- aigw.engine.failover: how a failed attempt is classed, what the provider asked
-- to wait, and the backoff between rounds (the loop itself runs against
-- real upstreams in tests/integration/test_failover.py).
local failover = require "aigw.engine.failover"

-- A seeded source, so the jitter's bounds are checked on fixed draws.
local function lcg(seed)
  local s = seed
  return function()
    s = (s * 1103515245 + 12345) % 2147483648
    return s / 2147483648
  end
end

describe("aigw.engine.failover", function()
  describe("status_class", function()
    it("names rate limits, server errors and overload", function()
      assert.equal("429", failover.status_class(429, ""))
      assert.equal("5xx", failover.status_class(500, ""))
      assert.equal("5xx", failover.status_class(503, ""))
      assert.equal("5xx", failover.status_class(529, '{"type":"error","error":{"type":"overloaded_error"}}'))
      assert.equal("timeout", failover.status_class(408, ""))
    end)

    it("tells a context-length error from other client errors", function()
      assert.equal("context_length", failover.status_class(400,
        '{"error":{"message":"This model\'s maximum context length is 8192 tokens","code":"context_length_exceeded"}}'))
      assert.equal("context_length", failover.status_class(400,
        '{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}'))
      assert.equal("4xx", failover.status_class(400, '{"error":{"message":"bad temperature"}}'))
      assert.equal("4xx", failover.status_class(401, '{"error":{"message":"maximum context length"}}'))
      assert.equal("4xx", failover.status_class(404, ""))
    end)
  end)

  describe("retry_after", function()
    it("reads seconds, milliseconds, and nothing else", function()
      assert.equal(7, failover.retry_after({ ["retry-after"] = "7" }))
      assert.equal(0.25, failover.retry_after({ ["retry-after-ms"] = "250", ["retry-after"] = "1" }))
      assert.is_nil(failover.retry_after({ ["retry-after"] = "Wed, 21 Oct 2015 07:28:00 GMT" }))
      assert.is_nil(failover.retry_after({ ["retry-after"] = "-3" }))
      assert.is_nil(failover.retry_after({}))
      assert.is_nil(failover.retry_after(nil))
    end)
  end)

  describe("backoff", function()
    local retry = { backoff = 0.1, max_backoff = 2 }

    it("doubles each round within equal jitter, capped", function()
      local random = lcg(42)
      for n = 1, 8 do
        local full = math.min(2, 0.1 * 2 ^ (n - 1))
        for _ = 1, 200 do
          local d = failover.backoff(retry, n, nil, random)
          assert.is_true(d >= full / 2 and d <= full, ("round %d: %g"):format(n, d))
        end
      end
    end)

    it("spreads over the jitter range", function()
      local random, lo, hi = lcg(7), math.huge, 0
      for _ = 1, 1000 do
        local d = failover.backoff(retry, 3, nil, random)
        lo, hi = math.min(lo, d), math.max(hi, d)
      end
      -- 0.4 s before jitter: draws cover most of [0.2, 0.4]
      assert.is_true(lo < 0.22 and hi > 0.38, lo .. " " .. hi)
    end)

    it("waits at least what the provider asked", function()
      local random = lcg(1)
      assert.equal(5, failover.backoff(retry, 1, 5, random))
      assert.is_true(failover.backoff(retry, 6, 0.01, random) >= 1)
    end)
  end)

  describe("header lines", function()
    it("become a table of lower-case names", function()
      local t = failover._parse_lines("Content-Type: application/json\r\nRetry-After: 3\r\nX-Empty:\r\n")
      assert.same({ ["content-type"] = "application/json", ["retry-after"] = "3", ["x-empty"] = "" }, t)
    end)
  end)
end)

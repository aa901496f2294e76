-- aigw.redis against a real redis-server of the spec's own (the C client
-- is tested more deeply by tests/unit/test_redis.c and test_redis.py).

local h = require "aigw.test.helpers"
local aigw = require "aigw"
local redis = require "aigw.redis"

describe("aigw.redis", function()
  local url, stop = h.redis_server()
  if not url then
    pending("needs redis-server: " .. tostring(stop))
    return
  end
  teardown(function() stop() end)

  it("calls and reads every reply type", function()
    assert.equal("OK", redis.call("SET", "spec:k", "v"))
    assert.equal("v", redis.call("GET", "spec:k"))
    assert.equal(redis.null, redis.call("GET", "spec:missing"))
    assert.equal(3, redis.call("INCRBY", "spec:n", 3))
    redis.call("DEL", "spec:l")
    redis.call("RPUSH", "spec:l", "a", "b")
    assert.same({ "a", "b" }, redis.call("LRANGE", "spec:l", 0, -1))
  end)

  it("is binary-safe and sends whole numbers as integers", function()
    local bin = "a\0b\r\n\255"
    redis.call("SET", "spec:bin", bin)
    assert.equal(bin, redis.call("GET", "spec:bin"))
    redis.call("SET", "spec:num", 5)
    assert.equal("5", redis.call("GET", "spec:num"))
  end)

  it("returns a Redis error as nil, message", function()
    redis.call("SET", "spec:s", "x")
    local v, err = redis.call("INCR", "spec:s")
    assert.is_nil(v)
    assert.matches("^ERR", err)
  end)

  it("pipelines, keeping each reply in its place", function()
    local res = assert(redis.pipeline({ { "SET", "spec:p", "1" }, { "INCR", "spec:s" }, { "INCR", "spec:p" } }))
    assert.equal("OK", res[1])
    assert.is_false(res[2][1])
    assert.matches("^ERR", res[2][2])
    assert.equal(2, res[3])
    assert.same({}, redis.pipeline({}))
  end)

  it("refuses commands that would break the shared connection", function()
    assert.has_error(function() redis.call("SELECT", 1) end)
    assert.has_error(function() redis.call("SUBSCRIBE", "x") end)
  end)

  it("times out and recovers", function()
    local v, err = redis.call("DEBUG", "SLEEP", "1.5")
    assert.is_nil(v)
    assert.equal("timeout", err)
    -- the next command reconnects
    local ok
    for _ = 1, 40 do
      ok = redis.call("PING") == "PONG"
      if ok then break end
      aigw.sleep(0.05)
    end
    assert.is_true(ok)
  end)

  it("cannot wait in a coroutine the spec made", function()
    local co = coroutine.create(function() return redis.call("PING") end)
    local _, v, err = coroutine.resume(co)
    assert.is_nil(v)
    assert.matches("coroutine created by a plugin", err)
  end)
end)

describe("aigw.redis without a url", function()
  it("says it is not configured", function()
    redis._configure(nil)
    assert.same({ nil, "redis is not configured" }, { redis.call("PING") })
  end)
end)

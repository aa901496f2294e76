-- aigw.shared: the shared dicts of the config `aigw test` runs with
-- (conf/gateway.lua declares limits = "8m" and cache = "32m").

local shared = require "aigw.shared"

describe("aigw.shared", function()
  local zone
  local n = 0
  local function key()   -- a fresh key per use: the zone lives as long as the process
    n = n + 1
    return "spec:shared:" .. n
  end

  setup(function()
    zone = shared.limits
    assert(zone, "the config must declare shared.limits (conf/gateway.lua does)")
  end)

  it("gives nil for a zone the config does not declare", function()
    assert.is_nil(shared.no_such_zone)
    assert.is_nil(shared[42])
  end)

  it("gives the same table for a zone each time", function()
    assert.equal(shared.limits, shared.limits)
    assert.equal("aigw.shared zone 'limits'", tostring(zone))
  end)

  it("is read-only", function()
    assert.has_error(function() shared.extra = {} end,
      "aigw.shared is read-only (zones are declared in the config): cannot set 'extra'")
  end)

  it("stores strings and numbers", function()
    local k1, k2, k3 = key(), key(), key()
    assert.is_true(zone:set(k1, "value"))
    assert.is_true(zone:set(k2, 1.5))
    assert.is_true(zone:set(k3, "bin\0ary"))
    assert.equal("value", zone:get(k1))
    assert.equal(1.5, zone:get(k2))
    assert.equal("bin\0ary", zone:get(k3))
    assert.is_nil(zone:get(key()))
  end)

  it("converts number keys and allows binary keys", function()
    local k = key()
    zone:set(12345, "num")
    assert.equal("num", zone:get("12345"))
    zone:set(k .. "\0x", "b")
    assert.equal("b", zone:get(k .. "\0x"))
    assert.is_nil(zone:get(k))
  end)

  it("deletes with a nil value and with delete", function()
    local k = key()
    zone:set(k, "x")
    assert.is_true(zone:set(k, nil))
    assert.is_nil(zone:get(k))
    zone:set(k, "y")
    assert.is_true(zone:delete(k))
    assert.is_nil(zone:get(k))
    assert.is_true(zone:delete(k))
  end)

  it("adds only absent keys", function()
    local k = key()
    assert.is_true(zone:add(k, 1))
    assert.same({ nil, "exists" }, { zone:add(k, 2) })
    assert.equal(1, zone:get(k))
  end)

  it("replaces only present keys", function()
    local k = key()
    assert.same({ nil, "not found" }, { zone:replace(k, 1) })
    zone:set(k, 1)
    assert.is_true(zone:replace(k, 2))
    assert.equal(2, zone:get(k))
  end)

  it("increments numbers", function()
    local k = key()
    assert.same({ nil, "not found" }, { zone:incr(k, 1) })
    assert.equal(5, zone:incr(k, 1, 4))
    assert.equal(3, zone:incr(k, -2))
    assert.equal(3.5, zone:incr(k, 0.5, 100))
    local s = key()
    zone:set(s, "text")
    assert.same({ nil, "not a number" }, { zone:incr(s, 1) })
  end)

  it("keeps TTLs", function()
    local k, forever = key(), key()
    zone:set(k, "x", 60)
    local ttl = zone:ttl(k)
    assert.is_true(ttl > 59 and ttl <= 60)
    zone:set(forever, "x")
    assert.equal(0, zone:ttl(forever))
    assert.same({ nil, "not found" }, { zone:ttl(key()) })
    local c = key()
    zone:incr(c, 1, 0, 30)
    zone:incr(c, 1, 0, 5)          -- an existing key keeps its TTL
    assert.is_true(zone:ttl(c) > 29)
  end)

  it("says when a value can never fit", function()
    assert.same({ nil, "value too large" }, { zone:set(key(), string.rep("x", zone:capacity() + 1)) })
  end)

  it("reports capacity and free space", function()
    assert.equal(8 * 1024 * 1024, zone:capacity())
    local before = zone:free_space()
    local k = key()
    zone:set(k, string.rep("x", 1000))
    assert.is_true(zone:free_space() <= before - 1000)
    zone:delete(k)
    assert.equal(before, zone:free_space())
  end)

  it("flushes everything", function()
    local z = shared.cache
    assert(z, "the config must declare shared.cache (conf/gateway.lua does)")
    z:set("a", 1)
    z:set("b", "2")
    z:flush_all()
    assert.is_nil(z:get("a"))
    assert.is_nil(z:get("b"))
    assert.equal(z:capacity(), z:free_space())
  end)

  describe("misuse raises", function()
    it("bad keys, values and TTLs", function()
      assert.has_error(function() zone:get({}) end, "bad argument #1 to 'get' (string expected, got table)")
      assert.has_error(function() zone:set("k", {}) end,
                       "bad argument #2 to 'set' (string, number or nil expected, got table)")
      assert.has_error(function() zone:set("k", 1, -1) end, "bad argument #3 to 'set' (ttl must be >= 0)")
      assert.has_error(function() zone:set("k", 1, "1") end, "bad argument #3 to 'set' (number expected, got string)")
      assert.has_error(function() zone:incr("k", "1") end, "bad argument #2 to 'incr' (number expected, got string)")
      assert.has_error(function() zone:incr("k", 1, "0") end, "bad argument #3 to 'incr' (number expected, got string)")
    end)

    it("a call with '.' instead of ':'", function()
      assert.has_error(function() zone.get("k") end,
        "calling 'get' on bad self (zone expected, got string; call it as zone:get(...))")
    end)
  end)
end)

-- aigw.request: get_query_args and get_client_addr.

local h = require "aigw.test.helpers"
local request = require "aigw.request"

local function args(query, max)
  return h.with_request(h.request{ path = "/q", query = query }, request.get_query_args, max)
end

local function client(addr)
  return h.with_request(h.request{ client = addr }, request.get_client_addr)
end

describe("aigw.request.get_query_args", function()
  it("decodes the documented example", function()
    assert.same({ a = { "1", "2" }, b = "x y", flag = true }, args("a=1&b=x%20y&a=2&flag"))
  end)

  it("gives an empty table without a query, or with an empty one", function()
    assert.same({}, h.with_request(h.request{ path = "/q" }, request.get_query_args))
    assert.same({}, args(""))
    assert.same({}, args("&&"))
  end)

  it("makes a list of a repeated key, in order", function()
    assert.same({ k = { "1", "2", "3" }, o = "x" }, args("k=1&o=x&k=2&k=3"))
    assert.same({ k = { true, "v" } }, args("k&k=v"))
  end)

  it("decodes + as a space and %XX escapes, in keys and values", function()
    assert.same({ q = "a b c" }, args("q=a+b%20c"))
    assert.same({ ["my key"] = "a+b=c&d" }, args("my+key=a%2Bb%3Dc%26d"))
    assert.same({ u = "\195\169\0" }, args("u=%C3%a9%00"))
  end)

  it("leaves broken escapes as they are", function()
    assert.same({ p = "100%", q = "%zz", r = "%4" }, args("p=100%&q=%zz&r=%4"))
  end)

  it("takes a flag without = as true, and an empty value or key as a string", function()
    assert.same({ flag = true, empty = "", [""] = "v" }, args("flag&empty=&=v"))
  end)

  it("splits only at the first =", function()
    assert.same({ expr = "a=b=c" }, args("expr=a=b=c"))
  end)

  it("reads at most 100 pairs by default, or max", function()
    local parts = {}
    for i = 1, 150 do parts[i] = "k" .. i .. "=" .. i end
    local q = table.concat(parts, "&")
    local function count(t)
      local n = 0
      for _ in pairs(t) do n = n + 1 end
      return n
    end
    local all = args(q)
    assert.equal(100, count(all))
    assert.equal("100", all.k100)
    assert.is_nil(all.k101)
    local three = args(q, 3)
    assert.same({ k1 = "1", k2 = "2", k3 = "3" }, three)
    -- repeated keys count as pairs too
    assert.same({ a = { "1", "2" } }, args("a=1&a=2&a=3", 2))
  end)

  it("raises outside a request", function()
    assert.has_error(function() request.get_query_args() end, "no request in this context")
  end)
end)

describe("aigw.request.get_client_addr", function()
  it("gives the client's address as text and its port", function()
    local addr, port = client("127.0.0.1")
    assert.equal("127.0.0.1", addr)
    assert.is_number(port)
    assert.equal(0, port)                 -- h.request's clients have no port
  end)

  it("gives IPv4 and IPv6 addresses as the client had them", function()
    assert.equal("10.1.2.3", (client("10.1.2.3")))
    assert.equal("::1", (client("::1")))
    assert.equal("2001:db8::1", (client("2001:db8::1")))
    assert.equal("::ffff:127.0.0.1", (client("::ffff:127.0.0.1")))
  end)

  it("defaults to 127.0.0.1", function()
    assert.equal("127.0.0.1", (h.with_request(h.request(), request.get_client_addr)))
  end)

  it("raises outside a request", function()
    assert.has_error(function() request.get_client_addr() end, "no request in this context")
  end)
end)

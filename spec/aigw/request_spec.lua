-- aigw.request, read from real C requests made by h.request.

local h = require "aigw.test.helpers"
local request = require "aigw.request"

-- Calls aigw.request.<fn>(...) for req.
local function call(req, fn, ...)
  return h.with_request(req, request[fn], ...)
end

describe("aigw.request", function()
  it("reads the method, path and query", function()
    local req = h.request{ method = "POST", path = "/v1/chat/completions", query = "a=1&b=%20" }
    assert.equal("POST", call(req, "get_method"))
    assert.equal("/v1/chat/completions", call(req, "get_path"))
    assert.equal("a=1&b=%20", call(req, "get_query"))
  end)

  it("tells no query from an empty one", function()
    assert.is_nil(call(h.request{ path = "/x" }, "get_query"))
    assert.equal("", call(h.request{ path = "/x", query = "" }, "get_query"))
  end)

  it("defaults to GET /", function()
    local req = h.request()
    assert.equal("GET", call(req, "get_method"))
    assert.equal("/", call(req, "get_path"))
  end)

  it("knows every method llhttp knows", function()
    for _, m in ipairs({ "DELETE", "HEAD", "OPTIONS", "PATCH", "PUT" }) do
      assert.equal(m, call(h.request{ method = m }, "get_method"))
    end
    assert.has_error(function() h.request{ method = "FETCH" } end, "request: unknown method 'FETCH'")
  end)

  it("finds headers case-insensitively, trailing blanks removed", function()
    local req = h.request{ headers = { ["X-Team"] = "search  \t", authorization = "Bearer k" } }
    assert.equal("search", call(req, "get_header", "x-team"))
    assert.equal("search", call(req, "get_header", "X-TEAM"))
    assert.equal("Bearer k", call(req, "get_header", "Authorization"))
    assert.is_nil(call(req, "get_header", "x-missing"))
  end)

  it("gives the first of repeated headers, and all of them in order", function()
    local req = h.request{ headers = { { "Accept", "a" }, { "X-Dup", "1" }, { "x-dup", "2" } } }
    assert.equal("1", call(req, "get_header", "x-dup"))
    assert.same({ { "Accept", "a" }, { "X-Dup", "1" }, { "x-dup", "2" } }, call(req, "get_headers"))
  end)

  it("puts named headers after listed ones, sorted by name", function()
    local req = h.request{ headers = { { "First", "1" }, zeta = "z", alpha = "a" } }
    assert.same({ { "First", "1" }, { "alpha", "a" }, { "zeta", "z" } }, call(req, "get_headers"))
  end)

  it("raises for a header name that is not a string", function()
    local req = h.request()
    assert.has_error(function() call(req, "get_header", 42) end,
                     "bad argument #1 to 'get_header' (string expected, got number)")
  end)

  it("reads the body, binary-safe", function()
    assert.equal("", call(h.request(), "get_body"))
    assert.equal("a\0b", call(h.request{ method = "POST", body = "a\0b" }, "get_body"))
  end)

  describe("get_json", function()
    it("decodes once and caches in ctx", function()
      local req = h.request{ method = "POST", body = '{"model":"echo","n":[1,2]}' }
      local ctx = {}
      local v = call(req, "get_json", ctx)
      assert.same({ model = "echo", n = { 1, 2 } }, v)
      assert.equal(v, ctx._engine.json)
      assert.equal(v, call(req, "get_json", ctx))
    end)

    it("explains an empty body", function()
      local ctx = {}
      local v, err = call(h.request(), "get_json", ctx)
      assert.is_nil(v)
      assert.equal("the request body is empty", err)
      assert.is_false(ctx._engine.json)
      assert.same({ nil, "the request body is empty" }, { call(h.request(), "get_json", ctx) })
    end)

    it("explains a body that is not JSON or not an object", function()
      local v, err = call(h.request{ body = "{nope" }, "get_json", {})
      assert.is_nil(v)
      assert.matches("^the request body is not valid JSON: ", err)
      v, err = call(h.request{ body = "42" }, "get_json", {})
      assert.is_nil(v)
      assert.equal("the request body is not valid JSON: expected an object", err)
    end)
  end)

  describe("id", function()
    it("takes a sane x-request-id", function()
      assert.equal("req-1.a:B_c", call(h.request{ headers = { ["x-request-id"] = "req-1.a:B_c" } }, "id"))
    end)

    it("makes a new one otherwise", function()
      local bad = { "", "has space", "semi;colon", string.rep("a", 65) }
      for _, v in ipairs(bad) do
        local id = call(h.request{ headers = { ["x-request-id"] = v } }, "id")
        assert.matches("^%x+$", id)
        assert.equal(32, #id)
      end
      assert.matches("^%x+$", call(h.request(), "id"))
      assert.not_equal(call(h.request(), "id"), call(h.request(), "id"))
    end)

    it("keeps the id for the request's life", function()
      local req = h.request()
      assert.equal(call(req, "id"), call(req, "id"))
    end)
  end)

  it("tells loopback clients", function()
    assert.is_true(call(h.request(), "is_loopback"))
    assert.is_true(call(h.request{ client = "127.1.2.3" }, "is_loopback"))
    assert.is_true(call(h.request{ client = "::1" }, "is_loopback"))
    assert.is_true(call(h.request{ client = "::ffff:127.0.0.1" }, "is_loopback"))
    assert.is_false(call(h.request{ client = "10.0.0.1" }, "is_loopback"))
    assert.is_false(call(h.request{ client = "2001:db8::1" }, "is_loopback"))
    assert.has_error(function() h.request{ client = "localhost" } end,
                     "request: client must be an IPv4 or IPv6 address, got 'localhost'")
  end)

  it("tells admin requests", function()
    assert.is_false(call(h.request(), "is_admin"))
    assert.is_true(call(h.request{ admin = true }, "is_admin"))
  end)

  it("tells Anthropic paths", function()
    assert.is_true(call(h.request{ path = "/v1/messages" }, "is_anthropic"))
    assert.is_true(call(h.request{ path = "/v1/messages/count_tokens" }, "is_anthropic"))
    assert.is_true(call(h.request{ path = "/v1/messages", query = "beta=true" }, "is_anthropic"))
    assert.is_false(call(h.request{ path = "/v1/chat/completions" }, "is_anthropic"))
    assert.is_false(call(h.request{ path = "/v1/messages/other" }, "is_anthropic"))
  end)

  it("gives a start time on the loop's clock", function()
    local t = call(h.request(), "start_time")
    assert.is_number(t)
    assert.is_true(t >= 0)
  end)

  it("raises outside a request", function()
    for _, fn in ipairs({ "get_method", "get_path", "get_query", "get_body", "get_headers", "id",
                          "is_loopback", "is_admin", "is_anthropic", "start_time" }) do
      assert.has_error(function() request[fn]() end, "no request in this context")
    end
  end)

  it("is seen by coroutines a plugin makes", function()
    local req = h.request{ path = "/inner" }
    local path = h.with_request(req, function()
      local co = coroutine.wrap(function() return request.get_path() end)
      return co()
    end)
    assert.equal("/inner", path)
  end)

  it("rejects a query in the path", function()
    assert.has_error(function() h.request{ path = "/x?y" } end,
                     "request: put the query in 'query', not in 'path'")
  end)
end)

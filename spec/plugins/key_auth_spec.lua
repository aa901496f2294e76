-- plugins/key-auth.lua: gateway keys from Authorization: Bearer or x-api-key.

local h = require "aigw.test.helpers"
local cjson = require "cjson"

local KEYS = { global = { api_keys = { "key-one", "key-two" } } }

local function auth(req, opts)
  return h.run("key-auth", {}, req, opts or KEYS)
end

describe("key-auth", function()
  describe("with keys configured", function()
    it("answers 401 when no key is sent", function()
      local status, body, headers = auth(h.request{ method = "POST", path = "/v1/chat/completions" })
      assert.equal(401, status)
      local e = cjson.decode(body).error
      assert.equal("missing_api_key", e.code)
      assert.equal("authentication_error", e.type)
      assert.matches('WWW-Authenticate: Bearer realm="aigw"\r\n', headers, 1, true)
    end)

    it("answers 401 for a wrong key", function()
      for _, hdrs in ipairs({ { authorization = "Bearer nope" }, { ["x-api-key"] = "nope" },
                              { authorization = "Bearer key-one-and-more" }, { ["x-api-key"] = "key-on" } }) do
        local status, body = auth(h.request{ headers = hdrs })
        assert.equal(401, status)
        assert.equal("invalid_api_key", cjson.decode(body).error.code)
      end
    end)

    it("passes a right key sent as a Bearer token", function()
      local status, _, _, ctx = auth(h.request{ headers = { authorization = "Bearer key-one" } })
      assert.is_nil(status)
      assert.equal(1, ctx.consumer)
    end)

    it("passes a right key sent as x-api-key", function()
      local status, _, _, ctx = auth(h.request{ headers = { ["x-api-key"] = "key-two" } })
      assert.is_nil(status)
      assert.equal(2, ctx.consumer)           -- which key, never the key itself
    end)

    it("takes the Bearer scheme in any case, with extra blanks", function()
      for _, v in ipairs({ "bearer key-one", "BEARER   key-one", "Bearer key-one  " }) do
        assert.is_nil((auth(h.request{ headers = { authorization = v } })))
      end
    end)

    it("falls back to x-api-key when Authorization is not a Bearer token", function()
      local req = h.request{ headers = { authorization = "Basic abc", ["x-api-key"] = "key-one" } }
      assert.is_nil((auth(req)))
      req = h.request{ headers = { authorization = "Bearer ", ["x-api-key"] = "key-two" } }
      local status, _, _, ctx = auth(req)
      assert.is_nil(status)
      assert.equal(2, ctx.consumer)
    end)

    it("checks keys for loopback clients too", function()
      local status = auth(h.request{ client = "127.0.0.1" })
      assert.equal(401, status)
    end)

    it("answers in Anthropic's envelope on /v1/messages", function()
      local status, body = auth(h.request{ method = "POST", path = "/v1/messages" })
      assert.equal(401, status)
      local e = cjson.decode(body)
      assert.equal("error", e.type)
      assert.equal("authentication_error", e.error.type)
    end)
  end)

  describe("with no keys configured", function()
    it("serves loopback clients", function()
      assert.is_nil((auth(h.request{ client = "127.0.0.1" }, {})))
      assert.is_nil((auth(h.request{ client = "::1" }, {})))
    end)

    it("answers 403 to anyone else, whatever key they send", function()
      local status, body = auth(h.request{ client = "192.0.2.7", headers = { ["x-api-key"] = "k" } }, {})
      assert.equal(403, status)
      local e = cjson.decode(body).error
      assert.equal("forbidden", e.code)
      assert.equal("permission_error", e.type)
    end)
  end)

  it("takes no config fields", function()
    assert.has_error(function() h.run("key-auth", { keys = { "x" } }) end,
                     "plugin key-auth: config field 'keys' is not known")
  end)

  it("copies the keys in init", function()
    local global = { api_keys = { "a" } }
    local _, conf = h.load("key-auth", {}, h.config(global))
    assert.same({ "a" }, conf.keys)
  end)
end)

-- aigw.engine.runtime: the model rewrite, and the request handler a worker runs.

local h = require "aigw.test.helpers"
local runtime = require "aigw.engine.runtime"
local router = require "aigw.engine.router"
local cjson = require "cjson"
local dispatch = require "aigw.engine.dispatch"
local request = require "aigw.request"

-- The body sent upstream for a client's body, as the router reads it and
-- dispatch rewrites its model.
local function replace(body, model, new)
  local req = h.request{ method = "POST", path = "/v1/chat/completions", body = body }
  return h.with_request(req, function()
    local ctx = {}
    assert(request.get_json_fields(ctx))
    return dispatch.passthrough_body(ctx, model, new)
  end)
end

describe("aigw.engine.runtime", function()
  describe("the model rewrite", function()
    it("replaces the top-level model and keeps every other byte", function()
      local body = '{"model":"openai/gpt-4o", "tools": [], "n": 12345678901234567, "s":"\\u00e9"}'
      assert.equal('{"model":"gpt-4o", "tools": [], "n": 12345678901234567, "s":"\\u00e9"}',
                   replace(body, "openai/gpt-4o", "gpt-4o"))
    end)

    it("leaves a model inside nested objects and arrays alone", function()
      local body = '{"metadata":{"model":"x/y"},"messages":[{"model":"x/y"}],"model":"x/y"}'
      assert.equal('{"metadata":{"model":"x/y"},"messages":[{"model":"x/y"}],"model":"y"}',
                   replace(body, "x/y", "y"))
    end)

    it("is not fooled by strings that look like keys", function()
      local body = '{"prompt":"\\"model\\":\\"x/y\\"","model" : "x/y"}'
      assert.equal('{"prompt":"\\"model\\":\\"x/y\\"","model" : "y"}', replace(body, "x/y", "y"))
      body = '{"messages":["model","x/y"],"model":"x/y"}'
      assert.equal('{"messages":["model","x/y"],"model":"y"}', replace(body, "x/y", "y"))
    end)

    it("handles escapes in the model value", function()
      local body = '{"model":"a\\/b"}'       -- "a/b" written with an escaped slash
      assert.equal('{"model":"b"}', replace(body, "a/b", "b"))
    end)

    it("encodes the new name as JSON", function()
      assert.equal('{"model":"q\\"x"}', replace('{"model":"p/q"}', "p/q", 'q"x'))
    end)

    it("leaves the body alone when the name does not change", function()
      assert.is_nil(replace('{"model":"x/y"}', "x/y", "x/y"))
    end)

    it("re-encodes a body whose model member is written with escapes", function()
      local out = cjson.decode(replace('{"mod\\u0065l":"x/y","n":[1]}', "x/y", "y"))
      assert.same({ model = "y", n = { 1 } }, out)
    end)
  end)

  describe("the model-name memo", function()
    local function picker()
      local conf = { providers = { openai = {} } }
      local providers = { openai = { name = "openai", kind = "openai" }, mock = { name = "mock", kind = "mock" } }
      return router._memo_picker(conf, providers)
    end

    it("keeps its entries and their size bounded, whatever names clients send", function()
      local pick, memo = picker()
      for i = 1, 3000 do
        pick(("%05d"):format(i) .. ("x"):rep(10000))
        pick(("%05d"):format(i) .. ("y"):rep(200))
      end
      local entries, bytes = 0, 0
      for k in pairs((memo())) do
        entries, bytes = entries + 1, bytes + #k
      end
      assert.is_true(entries <= 1024, "entries: " .. entries)
      assert.is_true(bytes <= 1024 * 256, "key bytes: " .. bytes)
    end)

    it("refuses names holding a control character or past 256 bytes, memoised or not", function()
      local pick = picker()
      assert.equal("openai", pick(("m"):rep(256)).name)
      assert.equal("gpt-\195\169 x", select(2, pick("gpt-\195\169 x")))
      for _, bad in ipairs({ ("m"):rep(257), "a\r\nb", "a\0b", "a\tb", "a\127b", "\27" }) do
        for _ = 1, 2 do
          local p, why = pick(bad)
          assert.is_nil(p)
          assert.is_false(why)
        end
      end
    end)
  end)

  describe("the handler", function()
    local conf_path, phases
    setup(function()
      conf_path = os.tmpname()
      local f = assert(io.open(conf_path, "wb"))
      f:write([[
        return {
          api_keys = { "secret" },
          plugins = { "key-auth" },
          providers = {
            openai = { kind = "openai", base_url = "http://127.0.0.1:9/v1", api_key = "sk-up" },
            other = { kind = "openai-compatible", base_url = "http://127.0.0.1:9/v1" },
          },
          routes = { { path = "/echo-only", provider = "mock" } },
        }
      ]])
      f:close()
      phases = runtime.init_worker(conf_path, 1)
    end)
    teardown(function() os.remove(conf_path) end)

    local AUTH = { authorization = "Bearer secret" }

    local function handle(opts)
      opts.headers = opts.headers or AUTH
      local req = h.request(opts)
      return h.with_request(req, phases.handler, {})
    end

    it("returns the runtime's phases", function()
      assert.is_function(phases.handler)
      assert.is_nil(phases.log)      -- no plugin has a log phase
    end)

    it("runs the plugin chain first", function()
      local status, body = handle{ method = "POST", path = "/v1/chat/completions", headers = {} }
      assert.equal(401, status)
      assert.equal("missing_api_key", cjson.decode(body).error.code)
    end)

    it("answers 404 for an unknown path", function()
      local status, body = handle{ path = "/v2/nothing" }
      assert.equal(404, status)
      assert.equal("no such endpoint: /v2/nothing", cjson.decode(body).error.message)
    end)

    it("answers 405 with Allow for the wrong method", function()
      local status, _, headers = handle{ method = "GET", path = "/v1/chat/completions" }
      assert.equal(405, status)
      assert.matches("Allow: POST\r\n", headers, 1, true)
    end)

    it("lists models", function()
      local status, body = handle{ path = "/v1/models" }
      assert.equal(200, status)
      local list = cjson.decode(body)
      assert.equal("list", list.object)
      assert.equal("echo", list.data[1].id)
    end)

    it("answers 400 for a body that is not JSON, or has no model", function()
      local status, body = handle{ method = "POST", path = "/v1/chat/completions", body = "nope" }
      assert.equal(400, status)
      assert.equal("invalid_json", cjson.decode(body).error.code)
      status, body = handle{ method = "POST", path = "/v1/chat/completions", body = '{"messages":[]}' }
      assert.equal(400, status)
      assert.equal("missing_model", cjson.decode(body).error.code)
    end)

    it("serves the echo model itself", function()
      local status, body = handle{ method = "POST", path = "/v1/chat/completions",
                                   body = '{"model":"echo","messages":[{"role":"user","content":"ping"}]}' }
      assert.equal(200, status)
      assert.equal("ping", cjson.decode(body).choices[1].message.content)
    end)

    it("proxies a bare model name to openai with the client's bytes", function()
      local decision, target, path, body = handle{ method = "POST", path = "/v1/chat/completions",
                                                   body = '{"model":"gpt-4o","tools":[]}' }
      assert.equal("proxy", decision)
      assert.equal("userdata", type(target))
      assert.equal("/chat/completions", path)
      assert.is_nil(body)                 -- nil: the core sends the client's body as is
    end)

    it("proxies provider/model with the model rewritten", function()
      local decision, _, path, body = handle{ method = "POST", path = "/chat/completions",
                                              body = '{"model":"other/llama-3","tools":[]}' }
      assert.equal("proxy", decision)
      assert.equal("/chat/completions", path)
      assert.equal('{"model":"llama-3","tools":[]}', body)
    end)

    it("routes a configured path to its provider", function()
      local status, body = handle{ method = "POST", path = "/echo-only",
                                   body = '{"messages":[{"role":"user","content":"routed"}]}' }
      assert.equal(200, status)
      assert.equal("routed", cjson.decode(body).choices[1].message.content)
    end)

    it("serves only admin endpoints on the admin listener", function()
      local LOCAL = { host = "127.0.0.1:9090" }   -- no admin_keys: a loopback Host
      local status, body = handle{ path = "/v1/models", admin = true, headers = LOCAL }
      assert.equal(404, status)
      assert.equal("no such admin endpoint: /v1/models", cjson.decode(body).error.message)
      status = handle{ method = "POST", path = "/status", admin = true, headers = LOCAL }
      assert.equal(405, status)
    end)

    it("sets ctx.config, ctx.provider and ctx.model", function()
      local ctx = {}
      local req = h.request{ method = "POST", path = "/v1/chat/completions", headers = AUTH,
                             body = '{"model":"other/m"}' }
      h.with_request(req, phases.handler, ctx)
      assert.equal("other", ctx.provider)
      assert.equal("m", ctx.model)
      assert.same({ "secret" }, ctx.config.api_keys)
    end)
  end)
end)

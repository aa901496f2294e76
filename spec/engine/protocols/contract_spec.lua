-- aigw.engine.protocols: every wire format's module has the contract written in
-- lua/aigw/engine/protocols/init.lua, and the pieces no translation spec covers.

local protocols = require "aigw.engine.protocols"
local json = require "aigw.json"

-- What a provider's format needs; a client's format needs CLIENT too
-- (Gemini is only a provider's yet).
local FUNCTIONS = { "request_from_hub", "response_to_hub", "stream_to_hub", "error_parse",
                    "error_format", "usage", "answer_usage", "stream_usage", "usage_event", "path" }
local CLIENT = { "request_to_hub", "response_from_hub", "counted_usage" }

describe("aigw.engine.protocols", function()
  it("names each module by its name, the hub once", function()
    local hubs = 0
    for name, p in pairs(protocols) do
      assert.equal(name, p.name)
      assert.equal(p, require("aigw.engine.protocols." .. name))
      if p.hub then hubs = hubs + 1 end
    end
    assert.equal(1, hubs)
    assert.is_true(protocols.openai.hub)
  end)

  it("gives every module a provider's side of the contract, and the clients' formats a client's", function()
    for name, p in pairs(protocols) do
      for _, f in ipairs(FUNCTIONS) do
        assert.equal("function", type(p[f]), name .. "." .. f)
      end
      assert.equal("function", type(p.reader.event), name .. ".reader.event")
      assert.equal("function", type(p.reader.finish), name .. ".reader.finish")
    end
    for _, name in ipairs { "openai", "anthropic" } do
      local w = protocols[name].writer
      for _, f in ipairs { "start", "chunk", "finish", "error_event" } do
        assert.equal("function", type(w[f]), name .. ".writer." .. f)
      end
      for _, f in ipairs(CLIENT) do
        assert.equal("function", type(protocols[name][f]), name .. "." .. f)
      end
    end
  end)

  it("builds the provider paths of each format", function()
    assert.equal("/chat/completions", protocols.openai.path(nil, "chat/completions"))
    assert.equal("/embeddings", protocols.openai.path(nil, "embeddings"))
    assert.equal("/v1/messages", protocols.anthropic.path(nil, "chat/completions"))
    assert.equal("/v1/messages/count_tokens", protocols.anthropic.path(nil, "messages/count_tokens"))
    assert.is_nil(protocols.anthropic.path(nil, "embeddings"))
    local g = protocols.gemini.path
    assert.equal("/v1beta/models/gemini-2.0-flash:generateContent", g(nil, "chat/completions", "gemini-2.0-flash"))
    assert.equal("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                 g(nil, "messages", "models/gemini-2.0-flash", true))
    assert.equal("/v1beta/models/a%2Fb:countTokens", g(nil, "messages/count_tokens", "a/b"))
    assert.is_nil(g(nil, "embeddings", "m"))
  end)

  it("reads errors in one shape, (status, body) first", function()
    local body = json.decode('[{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED",'
      .. '"details":[{"retryDelay":"28.4s"}]}}]')
    local e = protocols.gemini.error_parse(429, body)
    assert.same({ status = 429, message = "slow down", type = "rate_limit_error", code = "RESOURCE_EXHAUSTED",
                  retry_after = 29 }, e)
    local h = protocols.openai.error_parse(429, body)
    assert.same({ status = 429, message = "slow down", code = "RESOURCE_EXHAUSTED", retry_after = 29 }, h)
    assert.same({ status = 404, message = "upstream error 404", type = "not_found_error", code = "not_found_error" },
                protocols.anthropic.error_parse(404, nil))
    assert.same({ error = { message = "slow down", type = "rate_limit_error", code = "RESOURCE_EXHAUSTED",
                            param = json.null } }, protocols.openai.error_format(429, e))
    assert.same({ type = "error", error = { type = "rate_limit_error", message = "slow down" } },
                protocols.anthropic.error_format(429, e))
    assert.same({ error = { code = 429, message = "slow down", status = "RESOURCE_EXHAUSTED" } },
                protocols.gemini.error_format(429, e))
  end)

  it("reads each format's usage as aigw.usage does", function()
    local usage = require "aigw.usage"
    local u = { input_tokens = 10, output_tokens = 2, cache_read_input_tokens = 5 }
    assert.same(usage.from_anthropic(u), protocols.anthropic.answer_usage({ usage = u }))
    local m = { promptTokenCount = 4, candidatesTokenCount = 3, thoughtsTokenCount = 1 }
    assert.same(usage.from_gemini(m), protocols.gemini.answer_usage({ usageMetadata = m }))
    assert.is_nil(protocols.openai.answer_usage({ choices = {} }))
    local acc = usage.stream("gemini")
    acc:event(protocols.gemini.usage_event(m))
    assert.same(usage.from_gemini(m), acc:result())
  end)
end)

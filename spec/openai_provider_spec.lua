-- aigw.providers.openai: OpenAI and OpenAI-compatible upstreams.

local openai = require "aigw.providers.openai"
local h = require "aigw.test.helpers"

local function provider(p)
  local conf = h.config({ providers = { up = p } })
  return openai.new("up", conf.providers.up)
end

describe("aigw.providers.openai", function()
  it("makes a target from the config", function()
    local p = provider({ kind = "openai", base_url = "https://api.example.com/v1", api_key = "sk" })
    assert.equal("up", p.name)
    assert.equal("openai", p.kind)
    assert.equal("userdata", type(p.target))
  end)

  it("forwards to base_url + endpoint with the client's body unless given one", function()
    local p = provider({ kind = "openai-compatible", base_url = "http://127.0.0.1:9/v1" })
    assert.same({ "proxy", p.target, "/chat/completions" }, { p:serve({}, "chat/completions") })
    local decision, target, path, body = p:serve({}, "embeddings", '{"x":1}')
    assert.same({ "proxy", p.target, "/embeddings", '{"x":1}' }, { decision, target, path, body })
  end)

  it("rejects bad target settings", function()
    assert.has_error(function()
      provider({ kind = "openai", base_url = "https://127.0.0.1:9/v1", ca_file = "/nonexistent/ca.pem" })
    end)
  end)
end)

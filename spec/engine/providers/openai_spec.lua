-- aigw.engine.providers.openai: OpenAI and OpenAI-compatible upstreams.

local openai = require "aigw.engine.providers.openai"
local h = require "aigw.test.helpers"

local function provider(p)
  local conf = h.config({ providers = { up = p } })
  return openai.new("up", conf.providers.up)
end

describe("aigw.engine.providers.openai", function()
  it("makes a target from the config", function()
    local p = provider({ kind = "openai", base_url = "https://api.example.com/v1", api_key = "sk" })
    assert.equal("up", p.name)
    assert.equal("openai", p.kind)
    assert.equal("userdata", type(p.target))
  end)

  it("sends each endpoint to base_url + endpoint", function()
    local p = provider({ kind = "openai-compatible", base_url = "http://127.0.0.1:9/v1" })
    assert.equal("openai", p.format)
    assert.equal("/chat/completions", p:path("chat/completions"))
    assert.equal("/embeddings", p:path("embeddings"))
    assert.equal("/v1", p.base_path)
  end)

  it("sends its key as a Bearer token and never the client's credentials", function()
    local p = provider({ kind = "openai", base_url = "https://api.example.com/v1", api_key = "sk-1" })
    assert.matches("authorization: Bearer sk%-1\r\n", p.fetch_lines)
    assert.matches("accept%-encoding: identity\r\n", p.fetch_lines)
    assert.is_true(p.sets["x-api-key"])
    assert.is_true(p.sets["x-goog-api-key"])
  end)

  it("rejects bad target settings", function()
    assert.has_error(function()
      provider({ kind = "openai", base_url = "https://127.0.0.1:9/v1", ca_file = "/nonexistent/ca.pem" })
    end)
  end)
end)

-- aigw.engine.providers.*: each kind's config -> target paths, the headers it
-- sets and drops, and the config checks of kind-specific fields.

local h = require "aigw.test.helpers"

local MODULE = { openai = "openai", ["openai-compatible"] = "openai", ["azure-openai"] = "azure-openai",
                 anthropic = "anthropic", gemini = "gemini" }

local function provider(p)
  local conf = h.config({ providers = { up = p } })
  return require("aigw.engine.providers." .. MODULE[p.kind]).new("up", conf.providers.up), conf.providers.up
end

-- fetch_lines as name -> value
local function lines(p)
  local out, n = {}, 0
  for name, value in p.fetch_lines:gmatch("([^:\r\n]+): ([^\r\n]*)\r\n") do
    out[name] = value
    n = n + 1
  end
  return out, n
end

describe("providers", function()
  describe("headers for fetches and what the proxy drops", function()
    local CASES = {
      { kind = "openai", base_url = "https://api.openai.com/v1",
        want = { authorization = "Bearer sk-o" } },
      { kind = "openai-compatible", base_url = "http://127.0.0.1:8000/v1", want = {} },
      { kind = "azure-openai", base_url = "https://res.openai.azure.com",
        want = { ["api-key"] = "sk-o" } },
      { kind = "anthropic", base_url = "https://api.anthropic.com",
        want = { ["x-api-key"] = "sk-o", ["anthropic-version"] = "2023-06-01" } },
      { kind = "gemini", base_url = "https://generativelanguage.googleapis.com",
        want = { ["x-goog-api-key"] = "sk-o" } },
    }
    for _, c in ipairs(CASES) do
      it(c.kind .. ": its own credential header only, the client's dropped", function()
        local conf = { kind = c.kind, base_url = c.base_url }
        if c.kind ~= "openai-compatible" then conf.api_key = "sk-o" end
        local p = provider(conf)
        local got, n = lines(p)
        local want = { ["Content-Type"] = "application/json", ["accept-encoding"] = "identity" }
        for k, v in pairs(c.want) do want[k] = v end
        assert.same(want, got)
        local count = 0
        for _ in pairs(want) do count = count + 1 end
        assert.equal(count, n)
        -- header lines are sorted after Content-Type: the same text every time
        assert.equal(1, p.fetch_lines:find("Content-Type: application/json\r\n", 1, true))
        for _, name in ipairs({ "authorization", "x-api-key", "x-goog-api-key", "accept-encoding" }) do
          assert.is_true(p.sets[name], name)
        end
        assert.equal("userdata", type(p.target))
      end)
    end

    it("adds the config's headers (lowercased) and lets them replace the defaults", function()
      local p = provider({ kind = "anthropic", base_url = "https://api.anthropic.com", api_key = "k",
                           headers = { ["Anthropic-Beta"] = "tools-2024", ["X-Org"] = "acme" } })
      local got = lines(p)
      assert.equal("tools-2024", got["anthropic-beta"])
      assert.equal("acme", got["x-org"])
      assert.is_true(p.sets["anthropic-beta"])
      p = provider({ kind = "openai", base_url = "https://x.test/v1", api_key = "k",
                     headers = { Authorization = "Token other" } })
      assert.equal("Token other", lines(p).authorization)
    end)

    it("anthropic: the configured version", function()
      local p = provider({ kind = "anthropic", base_url = "https://api.anthropic.com", api_key = "k",
                           version = "2024-10-22" })
      assert.equal("2024-10-22", lines(p)["anthropic-version"])
    end)

    it("keeps the path of the base URL for fetches, without a trailing slash", function()
      assert.equal("/v1", provider({ kind = "openai", base_url = "https://api.openai.com/v1/" }).base_path)
      assert.equal("", provider({ kind = "anthropic", base_url = "https://api.anthropic.com" }).base_path)
      assert.equal("/proxy/gemini",
        provider({ kind = "gemini", base_url = "https://gw.example.com/proxy/gemini" }).base_path)
    end)
  end)

  describe("paths", function()
    it("openai: the endpoint under the base URL", function()
      local p = provider({ kind = "openai", base_url = "https://api.openai.com/v1" })
      assert.equal("/chat/completions", p:path("chat/completions", "gpt-4o", true))
      assert.equal("/embeddings", p:path("embeddings", "text-embedding-3-small"))
      assert.equal("openai", p.format)
    end)

    it("azure-openai: the deployment of the model, api-version, escaped names", function()
      local p = provider({ kind = "azure-openai", base_url = "https://res.openai.azure.com", api_key = "k",
                           deployments = { ["gpt-4o"] = "prod-4o" } })
      assert.equal("openai", p.format)
      assert.equal("/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
                   p:path("chat/completions", "gpt-4o"))
      -- a model not listed is its own deployment's name, escaped as a path segment
      assert.equal("/openai/deployments/my-dep.v2/embeddings?api-version=2024-10-21",
                   p:path("embeddings", "my-dep.v2"))
      assert.equal("/openai/deployments/a%2F..%2Fb%3Fx%3D1%20c/chat/completions?api-version=2024-10-21",
                   p:path("chat/completions", "a/../b?x=1 c"))
      -- built once per (endpoint, model), still right the second time
      assert.equal("/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
                   p:path("chat/completions", "gpt-4o"))
      p = provider({ kind = "azure-openai", base_url = "https://res.openai.azure.com", api_version = "2025-01-01-preview" })
      assert.equal("/openai/deployments/m/chat/completions?api-version=2025-01-01-preview",
                   p:path("chat/completions", "m"))
    end)

    it("azure-openai: the path cache is bounded in entries and in the size of its keys", function()
      local p = provider({ kind = "azure-openai", base_url = "https://res.openai.azure.com" })
      local long = ("d"):rep(10000)
      for i = 1, 5000 do
        assert.equal("/openai/deployments/m" .. i .. "/chat/completions?api-version=2024-10-21",
                     p:path("chat/completions", "m" .. i))
        if i % 10 == 0 then
          assert.equal("/openai/deployments/" .. long .. i .. "/embeddings?api-version=2024-10-21",
                       p:path("embeddings", long .. i))
        end
      end
      local entries, bytes = 0, 0
      for k, v in pairs(p.paths) do
        entries, bytes = entries + 1, bytes + #k + #v
      end
      assert.is_true(entries <= 256, "entries: " .. entries)
      assert.is_true(bytes <= 256 * 2 * 300, "bytes: " .. bytes)
    end)

    it("anthropic: /v1/messages for chat and messages, count_tokens", function()
      local p = provider({ kind = "anthropic", base_url = "https://api.anthropic.com" })
      assert.equal("anthropic", p.format)
      assert.equal("/v1/messages", p:path("messages"))
      assert.equal("/v1/messages", p:path("chat/completions", "claude-3-5-haiku-latest", true))
      assert.equal("/v1/messages/count_tokens", p:path("messages/count_tokens"))
      assert.is_nil(p:path("embeddings"))
    end)

    it("gemini: generateContent, streamGenerateContent?alt=sse, countTokens, escaped model", function()
      local p = provider({ kind = "gemini", base_url = "https://generativelanguage.googleapis.com" })
      assert.equal("gemini", p.format)
      assert.equal("/v1beta/models/gemini-2.0-flash:generateContent",
                   p:path("chat/completions", "gemini-2.0-flash", false))
      assert.equal("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                   p:path("chat/completions", "gemini-2.0-flash", true))
      assert.equal("/v1beta/models/gemini-2.5-pro:generateContent", p:path("messages", "models/gemini-2.5-pro"))
      assert.equal("/v1beta/models/gemini-2.5-pro:countTokens",
                   p:path("messages/count_tokens", "gemini-2.5-pro", true))
      assert.equal("/v1beta/models/tuned%2Fx%3Ay:generateContent", p:path("chat/completions", "tuned/x:y"))
      assert.is_nil(p:path("embeddings", "text-embedding-004"))
    end)
  end)

  describe("config of kind-specific fields", function()
    local function conf(p) return h.config({ providers = { up = p } }).providers.up end

    it("fills anthropic's max_tokens and version, and takes the config's", function()
      local c = conf({ kind = "anthropic", base_url = "https://api.anthropic.com" })
      assert.equal(4096, c.max_tokens)
      assert.equal("2023-06-01", c.version)
      assert.equal(4096, provider({ kind = "anthropic", base_url = "https://api.anthropic.com" }).max_tokens)
      c = conf({ kind = "anthropic", base_url = "https://api.anthropic.com", max_tokens = 1024 })
      assert.equal(1024, c.max_tokens)
      assert.equal(1024, provider({ kind = "anthropic", base_url = "https://api.anthropic.com",
                                    max_tokens = 1024 }).max_tokens)
    end)

    it("fills azure's api_version and deployments", function()
      local c = conf({ kind = "azure-openai", base_url = "https://res.openai.azure.com" })
      assert.equal("2024-10-21", c.api_version)
      assert.same({}, c.deployments)
    end)

    it("does not share the default deployments table between providers", function()
      local c = h.config({ providers = {
        a = { kind = "azure-openai", base_url = "https://a.openai.azure.com" },
        b = { kind = "azure-openai", base_url = "https://b.openai.azure.com", deployments = { x = "y" } },
      } })
      assert.same({}, c.providers.a.deployments)
      assert.same({ x = "y" }, c.providers.b.deployments)
    end)

    local BAD = {
      { { kind = "anthropic", max_tokens = 0 }, "providers.up.max_tokens: expected a whole number >= 1" },
      { { kind = "anthropic", max_tokens = 1.5 }, "providers.up.max_tokens: expected a whole number >= 1" },
      { { kind = "anthropic", max_tokens = "100" }, "providers.up.max_tokens: expected a whole number >= 1" },
      { { kind = "anthropic", version = "2023 06 01" }, "providers.up.version: expected a version" },
      { { kind = "azure-openai", api_version = "2024/10" }, "providers.up.api_version: expected an api-version" },
      { { kind = "azure-openai", deployments = "gpt" }, "providers.up.deployments: expected a table" },
      { { kind = "azure-openai", deployments = { ["gpt-4o"] = "a/b" } },
        "providers.up.deployments: expected a table of model = deployment (letters" },
      { { kind = "azure-openai", deployments = { "x" } },
        "providers.up.deployments: expected a table of model = deployment (letters" },
      -- a field of another kind
      { { kind = "openai", max_tokens = 10 }, "providers.up.max_tokens: expected one of kind, base_url" },
      { { kind = "gemini", api_version = "v1" }, "providers.up.api_version: expected one of kind, base_url" },
      { { kind = "anthropic", deployments = {} }, "providers.up.deployments: expected one of kind, base_url" },
      { { kind = "azure-openai", version = "1" }, "providers.up.version: expected one of kind, base_url" },
      { { kind = "vertex" }, "providers.up.kind: expected one of openai, openai-compatible, azure-openai, anthropic, gemini, mock" },
    }
    for i, c in ipairs(BAD) do
      it("rejects bad field #" .. i .. " (" .. c[2]:match("providers%.up%.([%w_]+)") .. ", " .. c[1].kind .. ")", function()
        local p = c[1]
        p.base_url = "https://x.test"
        local ok, err = pcall(h.config, { providers = { up = p } })
        assert.is_false(ok)
        assert.truthy(err:find("spec: " .. c[2], 1, true), "error: " .. err)
      end)
    end
  end)
end)

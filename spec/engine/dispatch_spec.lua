-- aigw.engine.dispatch through the runtime's handler: the request each (client
-- format, provider kind) pair sends, and what the client gets.
--
-- The providers point at tests/integration/mock_upstream.py, started by
-- spec/support/recording_upstream.py, which also tells what the mock last
-- received. Requests the runtime proxies come back from the handler as
-- "proxy", target, path, body (the core would send them); whole answers
-- are fetched by dispatch itself, so the mock sees them.
--
-- Golden cases in spec/golden/dispatch/<case>.json (spec/support/golden.lua):
--   input                 { path, body, headers } the client's request as
--                         this spec sends it (body: the exact text, or a
--                         table sent encoded; headers: those added to the
--                         usual ones), checked against what it sends
--   expected.proxy        { path, body } for a proxied request (body: the
--                         exact text sent, null for the client's bytes)
--   expected.upstream     { method, target, headers, body } what the mock
--                         received (headers lowercased and sorted; host,
--                         content-length left out; body decoded)
--   expected.client       { status, body } what the client got (decoded)
-- `created` and Gemini's tool call ids are pinned while a case runs.
-- AIGW_GOLDEN_WRITE=1 build/aigw test spec/engine/dispatch_spec.lua writes them.

local h = require "aigw.test.helpers"
local core = require "aigw.test.core"
local runtime = require "aigw.engine.runtime"
local json = require "aigw.json"
local aigw = require "aigw"

local golden = dofile(h.prefix .. "/spec/support/golden.lua")
local RID = "spec-dispatch-0001"

local normalize = h.json_shape

-- v as it travels: encoded with aigw.json and decoded again.
local function wire(v)
  return json.decode(json.encode(v))
end

-- The case's file against what this spec sent (input) and got (expected).
local function check(case, input, expected)
  if golden.writing then golden.save("dispatch", case, { input = input, expected = expected }) end
  local want = golden.load("dispatch", case)
  assert.same(normalize(want.input), normalize(wire(input)), case .. ": input")
  assert.same(normalize(want.expected), normalize(wire(expected)), case)
end

local pinned = h.pinned

local TOOLS = {
  { type = "function", ["function"] = { name = "get_weather", description = "Weather of a city",
    parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } } } },
}
local ATOOLS = {
  { name = "get_weather", description = "Weather of a city",
    input_schema = { type = "object", properties = { city = { type = "string" } }, required = { "city" } } },
}

describe("aigw.engine.dispatch", function()
  local url, records, pid, conf_path, phases

  setup(function()
    local line
    pid, line = core.spawn({ "/usr/bin/python3", "-u", h.prefix .. "/spec/support/recording_upstream.py" })
    assert(pid, line)
    url, records = line:match("listening on (%S+) records (%S+)")
    assert(url, line)
    conf_path = os.tmpname()
    local f = assert(io.open(conf_path, "wb"))
    f:write(string.format([[
      return {
        providers = {
          oai = { kind = "openai", base_url = %q, api_key = "sk-oai" },
          openai = { kind = "openai", base_url = %q, api_key = "sk-oai" },
          az = { kind = "azure-openai", base_url = %q, api_key = "az-key",
                 deployments = { ["gpt-4o"] = "prod-4o" } },
          ant = { kind = "anthropic", base_url = %q, api_key = "sk-ant" },
          gem = { kind = "gemini", base_url = %q, api_key = "g-key" },
          slow = { kind = "anthropic", base_url = %q, api_key = "sk-ant", timeouts = { total = 0.3 } },
          broken = { kind = "gemini", base_url = %q, api_key = "g-key" },
        },
      }
    ]], url .. "/v1", url .. "/v1", url, url, url, url, records))
    f:close()
    phases = runtime.init_worker(conf_path, 1)
  end)

  teardown(function()
    if pid then core.kill(pid) end
    if conf_path then os.remove(conf_path) end
  end)

  -- The client's request through the handler: what it returns, and ctx.
  local function handle(path, body, headers)
    local hd = { authorization = "Bearer client-key", ["x-api-key"] = "client-x",
                 ["x-goog-api-key"] = "client-g", ["x-request-id"] = RID, ["x-trace"] = "t-1" }
    for k, v in pairs(headers or {}) do hd[k] = v end
    if type(body) == "table" then body = json.encode(body) end
    local req = h.request{ method = "POST", path = path, headers = hd, body = body }
    local ctx = {}
    local res = { pinned(function() return h.with_request(req, phases.handler, ctx) end) }
    return res, ctx
  end

  local function last_upstream()
    return h.with_request(nil, function()
      local res = assert(aigw.http.request{ url = records .. "/last", timeout = 5 })
      return json.decode(res.body)
    end)
  end

  local function reset()
    h.with_request(nil, function() assert(aigw.http.request{ url = records .. "/reset", timeout = 5 }) end)
  end

  local function upstream_view(r)
    local hs = {}
    for _, kv in ipairs(r.headers) do
      local name = kv[1]:lower()
      if name ~= "host" and name ~= "content-length" then hs[#hs + 1] = { name, kv[2] } end
    end
    table.sort(hs, function(a, b) return a[1] < b[1] end)
    return { method = r.method, target = r.target, headers = hs, body = json.decode(r.body) }
  end

  -- A whole answer fetched by dispatch: the upstream's view and the client's.
  local function fetched(case, path, body, headers)
    reset()
    local res, ctx = handle(path, body, headers)
    local status, out = res[1], res[2]
    assert.is_number(status, "an answer, not " .. tostring(status))
    local r = last_upstream()
    assert.is_table(r, "the mock got the request")
    check(case, { path = path, body = body, headers = headers },
          { upstream = upstream_view(r), client = { status = status, body = json.decode(out) } })
    if path:find("/messages", 1, true) then
      -- for Anthropic's SDKs, the request id where they look
      assert.equal("Content-Type: application/json\r\nrequest-id: " .. RID .. "\r\n", res[3])
    else
      assert.equal("Content-Type: application/json\r\n", res[3])
    end
    return status, json.decode(out), ctx, r
  end

  -- exact: the body keeps the client's bytes (compared as text); else it
  -- was encoded again (compared decoded: key order is not kept).
  local function proxied(case, path, body, headers, exact)
    local res, ctx = handle(path, body, headers)
    assert.equal("proxy", res[1])
    assert.equal("userdata", type(res[2]))
    local b = res[4] or json.null
    if res[4] and not exact then b = json.decode(res[4]) end
    check(case, { path = path, body = body, headers = headers }, { proxy = { path = res[3], body = b } })
    return res[3], res[4], ctx
  end

  local CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"

  describe("OpenAI client", function()
    it("-> openai: model rewritten in the client's bytes", function()
      local raw = '{"model":"oai/gpt-4o-mini", "messages":[{"role":"user","content":"hi é"}],' ..
                  ' "tools": [], "seed": 12345678901234567, "metadata":{"model":"oai/gpt-4o-mini"}}'
      local path, body, ctx = proxied("openai_to_openai", CHAT, raw, nil, true)
      assert.equal("/chat/completions", path)
      assert.equal(raw:gsub('^{"model":"oai/gpt%-4o%-mini"', '{"model":"gpt-4o-mini"'), body)
      assert.equal("oai", ctx.provider)
      assert.equal("gpt-4o-mini", ctx.model)
      assert.is_false(ctx._engine.reply.stream)
    end)

    it("-> openai: the client's bytes as they are when the model needs no rewrite", function()
      local res = handle(CHAT, '{"model":"gpt-4o-mini","messages":[]}')
      assert.equal("proxy", res[1])
      assert.is_nil(res[4])
    end)

    it("-> openai stream: stream_options.include_usage asked for, the usage chunk left out later", function()
      local raw = '{"model":"oai/gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
      local _, body, ctx = proxied("openai_to_openai_stream", CHAT, raw, nil, true)
      assert.equal('{"stream_options":{"include_usage":true},"model":"gpt-4o-mini","stream":true,' ..
                   '"messages":[{"role":"user","content":"hi"}]}', body)
      assert.is_true(ctx._engine.reply.injected_usage)
      assert.is_false(ctx._engine.reply.include_usage)
      -- the client that asked itself keeps its bytes and gets the usage chunk
      _, body, ctx = proxied("openai_to_openai_stream_usage", CHAT,
        '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}')
      assert.is_nil(body)
      assert.is_true(ctx._engine.reply.include_usage)
      assert.is_false(ctx._engine.reply.injected_usage)
    end)

    it("-> azure: the deployment path and api-version", function()
      local path, body = proxied("openai_to_azure", CHAT, '{"model":"az/gpt-4o","messages":[]}', nil, true)
      assert.equal("/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", path)
      assert.equal('{"model":"gpt-4o","messages":[]}', body)
      path = proxied("openai_to_azure_unlisted", "/v1/embeddings", '{"model":"az/emb 3","input":"x"}', nil, true)
      assert.equal("/openai/deployments/emb%203/embeddings?api-version=2024-10-21", path)
    end)

    it("-> anthropic: translated, max_tokens filled, x-api-key and anthropic-version, tool call back", function()
      local status, out, ctx = fetched("openai_to_anthropic", CHAT, {
        model = "ant/claude-3-5-haiku-latest", tools = TOOLS, temperature = 0.5,
        messages = { { role = "system", content = "Be brief." }, { role = "user", content = "Weather in Paris?" } },
      })
      assert.equal(200, status)
      assert.equal("get_weather", out.choices[1].message.tool_calls[1]["function"].name)
      assert.equal("tool_calls", out.choices[1].finish_reason)
      assert.equal("claude-3-5-haiku-latest", ctx.model)
      -- the mock counts the words of the request's strings
      assert.equal(out.usage.prompt_tokens, ctx.usage.prompt_tokens)
      assert.near((ctx.usage.prompt_tokens * 0.80 + ctx.usage.completion_tokens * 4.00) / 1e6, ctx.cost, 1e-15)
    end)

    it("-> anthropic, text only: the fast path's request and answer, as the general translator's", function()
      -- The golden case was written with the fast path off: both bodies must decode the same.
      local status, out, ctx = fetched("openai_to_anthropic_text", CHAT, {
        model = "ant/claude-3-5-haiku-latest", temperature = 0.25, max_tokens = 64, user = "u-1", n = 1,
        stop = { "END" }, metadata = { trace = "t" },
        messages = { { role = "system", content = "Be brief." }, { role = "user", content = "Hi \u{e9} \"q\"\n" },
                     { role = "assistant", content = "" }, { role = "user", content = "Why?" } },
      })
      assert.equal(200, status)
      assert.equal("stop", out.choices[1].finish_reason)
      assert.equal(out.usage.prompt_tokens, ctx.usage.prompt_tokens)
      assert.equal(out.usage.completion_tokens, ctx.usage.completion_tokens)
    end)

    it("-> anthropic stream: proxied to /v1/messages with the translated body", function()
      local path, body, ctx = proxied("openai_to_anthropic_stream", CHAT, {
        model = "ant/claude-3-5-haiku-latest", stream = true, max_tokens = 100,
        messages = { { role = "user", content = "hi" } } })
      assert.equal("/v1/messages", path)
      local d = json.decode(body)
      assert.equal(100, d.max_tokens)
      assert.is_true(d.stream)
      assert.equal("anthropic", ctx._engine.reply.upstream)
      assert.equal("openai", ctx._engine.reply.client)
    end)

    it("-> gemini: generateContent, x-goog-api-key, translated body", function()
      local status, out, ctx = fetched("openai_to_gemini", CHAT, {
        model = "gem/gemini-2.0-flash", max_tokens = 50,
        messages = { { role = "system", content = "Be brief." }, { role = "user", content = "Say hello" } },
      })
      assert.equal(200, status)
      assert.equal("Hello from the mock", out.choices[1].message.content)
      assert.equal(out.usage.total_tokens, ctx.usage.total_tokens)
      local _, tout = fetched("openai_to_gemini_tools", CHAT, {
        model = "gem/gemini-2.0-flash", tools = TOOLS, messages = { { role = "user", content = "Paris?" } } })
      assert.equal('{"city":"Paris"}', tout.choices[1].message.tool_calls[1]["function"].arguments)
    end)

    it("-> gemini stream: streamGenerateContent?alt=sse", function()
      local path = proxied("openai_to_gemini_stream", CHAT, {
        model = "gem/gemini-2.0-flash", stream = true, messages = { { role = "user", content = "hi" } } })
      assert.equal("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", path)
    end)
  end)

  describe("Anthropic client", function()
    it("-> openai: translated to chat, Bearer key, answered as a message", function()
      local status, out, ctx = fetched("anthropic_to_openai", MESSAGES, {
        model = "oai/gpt-4o-mini", max_tokens = 64, system = "Be brief.", tools = ATOOLS,
        messages = { { role = "user", content = "Weather in Paris?" } } })
      assert.equal(200, status)
      assert.equal("message", out.type)
      assert.equal("tool_use", out.stop_reason)
      assert.same({ city = "Paris" }, out.content[1].input)
      assert.equal(9, ctx.usage.prompt_tokens)
    end)

    it("-> openai stream: proxied with the usage asked for", function()
      local path, body, ctx = proxied("anthropic_to_openai_stream", MESSAGES, {
        model = "oai/gpt-4o-mini", max_tokens = 64, stream = true, messages = { { role = "user", content = "hi" } } })
      assert.equal("/chat/completions", path)
      assert.is_true(json.decode(body).stream_options.include_usage)
      assert.equal("anthropic", ctx._engine.reply.client)
    end)

    it("-> anthropic: pass-through, the model rewritten in the client's bytes", function()
      local raw = '{"model":"ant/claude-3-5-haiku-latest","max_tokens":10,"messages":[{"role":"user","content":"x"}]}'
      local path, body = proxied("anthropic_to_anthropic", MESSAGES, raw, nil, true)
      assert.equal("/v1/messages", path)
      assert.equal((raw:gsub("ant/", "")), body)
    end)

    it("-> anthropic: max_tokens filled in when the client sent none", function()
      local _, body = proxied("anthropic_to_anthropic_no_max", MESSAGES,
        '{"model":"ant/claude-3-5-haiku-latest","messages":[{"role":"user","content":"x"}]}')
      local d = json.decode(body)
      assert.equal(4096, d.max_tokens)
      assert.equal("claude-3-5-haiku-latest", d.model)
    end)

    it("-> gemini: generateContent, answered as a message", function()
      local status, out = fetched("anthropic_to_gemini", MESSAGES, {
        model = "gem/gemini-2.0-flash", max_tokens = 64,
        messages = { { role = "user", content = { { type = "text", text = "Say hello" } } } } })
      assert.equal(200, status)
      assert.same({ { type = "text", text = "Hello from the mock" } }, out.content)
      assert.equal("end_turn", out.stop_reason)
    end)

    it("count_tokens -> anthropic: proxied; -> gemini: countTokens; other kinds: 400", function()
      local path = proxied("count_tokens_anthropic", "/v1/messages/count_tokens",
        '{"model":"ant/claude-3-5-haiku-latest","messages":[{"role":"user","content":"a b c"}]}', nil, true)
      assert.equal("/v1/messages/count_tokens", path)
      reset()
      local res = handle("/v1/messages/count_tokens",
        { model = "gem/gemini-2.0-flash", system = "be brief", messages = { { role = "user", content = "a b c" } } })
      assert.equal(200, res[1])
      assert.is_number(json.decode(res[2]).input_tokens)
      local r = last_upstream()
      assert.equal("/v1beta/models/gemini-2.0-flash:countTokens", r.target)
      local greq = json.decode(r.body).generateContentRequest
      assert.equal("models/gemini-2.0-flash", greq.model)
      assert.equal("user", greq.contents[1].role)
      for _, m in ipairs({ "oai/gpt-4o-mini" }) do
        local refused = handle("/v1/messages/count_tokens", { model = m, messages = { { role = "user", content = "x" } } })
        assert.equal(400, refused[1])
        local d = json.decode(refused[2])
        assert.equal("error", d.type)
        assert.matches("does not count tokens", d.error.message)
      end
    end)
  end)

  describe("errors", function()
    it("embeddings to a gemini provider: 400 unsupported_endpoint", function()
      local res = handle("/v1/embeddings", { model = "gem/text-embedding-004", input = "x" })
      assert.equal(400, res[1])
      local d = json.decode(res[2])
      assert.equal("unsupported_endpoint", d.error.code)
      assert.equal("provider 'gem' (gemini) does not serve /v1/embeddings", d.error.message)
    end)

    it("a whole answer that is not JSON: 502", function()
      local res = handle(CHAT, { model = "broken/gemini-2.0-flash", messages = { { role = "user", content = "x" } } })
      assert.equal(502, res[1])
      local d = json.decode(res[2])
      assert.equal("bad_gateway", d.error.code)
      assert.equal("malformed answer from broken (not JSON)", d.error.message)
    end)

    it("an upstream error: handed on with ctx.upstream_status and ctx.upstream_body", function()
      for _, c in ipairs({ { "ant/claude-3-5-haiku-latest", CHAT, "retry-after: 7" },
                           { "gem/gemini-2.0-flash", MESSAGES, nil },
                           { "oai/gpt-4o-mini", MESSAGES, "Retry-After: 7" } }) do
        local res, ctx = handle(c[2], { model = c[1], max_tokens = 5, messages = { { role = "user", content = "x" } } },
                                { ["x-mock-behavior"] = "status=429" })
        assert.equal(429, res[1])
        assert.equal(429, ctx.upstream_status)
        assert.equal(res[2], ctx.upstream_body)
        assert.truthy(json.decode(res[2]).error)
        assert.matches("^Content%-Type: application/json[^\r]*\r\n", res[3])
        if c[3] then
          assert.equal("Retry-After: 7\r\n", res[3]:match("Retry%-After: [^\r]*\r\n"))
        else
          assert.is_nil(res[3]:find("Retry-After", 1, true))
        end
      end
    end)

    it("hands on the headers error-mapping reads for Retry-After", function()
      local real = aigw_core.http_request
      aigw_core.http_request = function()
        return 429, { ["content-type"] = "application/json; charset=utf-8", ["x-ratelimit-reset-requests"] = "6m0s",
                      ["x-ratelimit-reset-tokens"] = "1s", ["set-cookie"] = "a=b" },
               '{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}'
      end
      local ok, res, ctx = pcall(handle, MESSAGES, { model = "oai/gpt-4o-mini", max_tokens = 5,
                                                     messages = { { role = "user", content = "x" } } })
      aigw_core.http_request = real
      assert(ok, res)
      assert.equal(429, res[1])
      assert.equal(429, ctx.upstream_status)
      assert.equal("Content-Type: application/json; charset=utf-8\r\nx-ratelimit-reset-requests: 6m0s\r\n" ..
                   "x-ratelimit-reset-tokens: 1s\r\n", res[3])
    end)

    it("an upstream that does not answer in time: 504", function()
      local t0 = aigw.monotonic()
      local res = handle(CHAT, { model = "slow/claude-3-5-haiku-latest", messages = { { role = "user", content = "x" } } },
                         { ["x-mock-behavior"] = "json,delay-headers=3" })
      assert.equal(504, res[1])
      local d = json.decode(res[2])
      assert.equal("upstream_timeout", d.error.code)
      assert.equal("upstream timeout (slow)", d.error.message)
      assert.is_true(aigw.monotonic() - t0 < 2)
    end)
  end)
end)

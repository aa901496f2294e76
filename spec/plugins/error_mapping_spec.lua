-- plugins/error-mapping.lua: every provider's error body shape, in each
-- client's envelope, with the status mapping and Retry-After.

local h = require "aigw.test.helpers"
local cjson = require "cjson"

local RID = "spec-req-0001"

local OPENAI_PATH, ANTHROPIC_PATH = "/v1/chat/completions", "/v1/messages"

-- Runs the plugin on an upstream error answer; returns status, decoded
-- body, header lines, raw body.
local function map(up_status, up_body, o)
  o = o or {}
  local req = h.request{ method = "POST", path = o.path or OPENAI_PATH,
                         headers = { ["x-request-id"] = RID } }
  local headers = o.headers or {}
  headers["Content-Type"] = headers["Content-Type"] or "application/json"
  local status, body, lines = h.run("error-mapping", o.conf or {}, req, {
    phases = { "header_filter", "body_filter" },
    ctx = { upstream_status = up_status, upstream_body = up_body, provider = "up" },
    response = { status = up_status, headers = headers, body = o.chunks or { up_body } },
  })
  return status, cjson.decode(body), lines, body
end

local function header(lines, name)
  for k, v in ("\n" .. lines):gmatch("\n([^:\r\n]+): ([^\r\n]*)") do
    if k:lower() == name:lower() then return v end
  end
end

-- The bodies providers answer with.
local BODY = {
  openai = '{"error":{"message":"Rate limit reached for gpt-4o-mini","type":"requests","param":null,"code":"rate_limit_exceeded"}}',
  openai_400 = '{"error":{"message":"Invalid value for \'temperature\'","type":"invalid_request_error","param":"temperature","code":null}}',
  openai_500 = '{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}',
  azure_404 = '{"error":{"code":"404","message":"Resource not found"}}',
  azure_429 = '{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded call rate limit."}}',
  azure_filter = '{"error":{"message":"The response was filtered","type":null,"param":"prompt","code":"content_filter","status":400}}',
  anthropic = '{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}',
  anthropic_429 = '{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"}}',
  anthropic_529 = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
  gemini_400 = '{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}',
  gemini_array = '[{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}]',
  gemini_429 = '{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED",' ..
    '"details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},' ..
    '{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"28.4s"}]}}',
  text = "upstream connect error or disconnect/reset before headers\n",
  empty = "",
}

describe("error-mapping", function()
  describe("client envelopes", function()
    -- up status, body, status out, OpenAI code, message
    local CASES = {
      { 429, "openai", 429, "rate_limit_exceeded", "Rate limit reached for gpt-4o-mini" },
      { 400, "openai_400", 400, "invalid_request_error", "Invalid value for 'temperature'" },
      { 404, "azure_404", 404, "not_found", "Resource not found" },
      { 429, "azure_429", 429, "rate_limit_exceeded",
        "Requests to the ChatCompletions_Create Operation have exceeded call rate limit." },
      { 400, "azure_filter", 400, "content_filter", "The response was filtered" },
      { 400, "anthropic", 400, "invalid_request_error", "max_tokens: Field required" },
      { 429, "anthropic_429", 429, "rate_limit_error", "Number of requests has exceeded your rate limit" },
      { 400, "gemini_400", 400, "invalid_argument", "API key not valid. Please pass a valid API key." },
      { 400, "gemini_array", 400, "invalid_argument", "Invalid JSON payload received." },
      { 429, "gemini_429", 429, "resource_exhausted", "Resource has been exhausted (e.g. check quota)." },
      { 413, "text", 413, "request_too_large", "upstream connect error or disconnect/reset before headers" },
      { 422, "empty", 422, "invalid_request", "no error message (status 422)" },
      { 500, "openai_500", 502, "upstream_error", "provider up answered 500 server_error: The server had an error" },
      { 529, "anthropic_529", 502, "upstream_error", "provider up answered 529 overloaded_error: Overloaded" },
      { 503, "text", 502, "upstream_error",
        "provider up answered 503: upstream connect error or disconnect/reset before headers" },
      { 500, "empty", 502, "upstream_error", "provider up answered 500: no error message (status 500)" },
      { 504, "gemini_400", 504, "upstream_timeout",
        "provider up timed out (504): API key not valid. Please pass a valid API key." },
      { 408, "empty", 504, "upstream_timeout", "provider up timed out (408): no error message (status 408)" },
      { 401, "openai_400", 502, "upstream_auth_failed",
        "provider up refused the gateway's credentials (401): Invalid value for 'temperature'" },
      { 403, "gemini_array", 502, "upstream_auth_failed",
        "provider up refused the gateway's credentials (403): Invalid JSON payload received." },
    }
    local ANTHROPIC_TYPE = { [400] = "invalid_request_error", [404] = "not_found_error", [413] = "request_too_large",
                             [422] = "invalid_request_error", [429] = "rate_limit_error", [502] = "api_error",
                             [504] = "timeout_error" }
    local OPENAI_TYPE = { [400] = "invalid_request_error", [404] = "not_found_error", [413] = "invalid_request_error",
                          [422] = "invalid_request_error", [429] = "rate_limit_error", [502] = "server_error",
                          [504] = "timeout" }
    for _, c in ipairs(CASES) do
      local up, name, want, code, msg = c[1], c[2], c[3], c[4], c[5]
      it(up .. " " .. name .. " -> " .. want .. " in OpenAI's envelope", function()
        local status, d, lines = map(up, BODY[name])
        assert.equal(want, status)
        assert.same({ error = { message = msg, type = OPENAI_TYPE[want], code = code, param = cjson.null,
                                request_id = RID } }, d)
        assert.equal("application/json", header(lines, "content-type"))
      end)
      it(up .. " " .. name .. " -> " .. want .. " in Anthropic's envelope", function()
        local status, d = map(up, BODY[name], { path = ANTHROPIC_PATH })
        assert.equal(want, status)
        assert.same({ type = "error", error = { type = ANTHROPIC_TYPE[want], message = msg }, request_id = RID }, d)
      end)
    end

    it("keeps a 5xx with keep_5xx", function()
      local status, d = map(503, BODY.anthropic_529, { conf = { keep_5xx = true } })
      assert.equal(503, status)
      assert.equal("upstream_error", d.error.code)
      assert.equal("provider up answered 503 overloaded_error: Overloaded", d.error.message)
      status = map(504, BODY.empty, { conf = { keep_5xx = true } })
      assert.equal(504, status)
    end)

    it("cuts a long plain-text body to 200 characters, whitespace folded", function()
      local text = ("<html>\n  <body>" .. ("x"):rep(300) .. "</body></html>")
      local _, d = map(400, text)
      assert.equal(200, #d.error.message)
      assert.equal("<html> <body>xxx", d.error.message:sub(1, 16))
    end)

    it("answers the whole error however the upstream body came in pieces", function()
      local status, d, _, raw = map(400, BODY.anthropic, { chunks = { '{"type":"er', 'ror","error":{', '...' } })
      assert.equal(400, status)
      assert.equal("max_tokens: Field required", d.error.message)
      assert.equal("\n", raw:sub(-1))
      assert.is_nil(raw:find("...", 1, true))
    end)

    it("leaves answers alone when there was no upstream error", function()
      local req = h.request{ path = OPENAI_PATH }
      local body = '{"id":"x"}'
      local status, out, lines = h.run("error-mapping", {}, req, {
        phases = { "header_filter", "body_filter" },
        ctx = { upstream_status = 200 },
        response = { status = 200, headers = { ["Content-Type"] = "application/json", ["Retry-After"] = "3" },
                     body = body },
      })
      assert.equal(200, status)
      assert.equal(body, out)
      assert.equal("3", header(lines, "retry-after"))
      -- a gateway error (no upstream body) is already in the envelope
      status, out = h.run("error-mapping", {}, req, {
        phases = { "header_filter", "body_filter" }, ctx = { upstream_status = 429 },
        response = { status = 429, body = "mine" },
      })
      assert.equal(429, status)
      assert.equal("mine", out)
    end)
  end)

  describe("Retry-After on a 429", function()
    it("keeps the provider's header first", function()
      local _, _, lines = map(429, BODY.gemini_429, { headers = { ["Retry-After"] = "7",
                                                                 ["x-ratelimit-reset-requests"] = "6m0s" } })
      assert.equal("7", header(lines, "retry-after"))
    end)

    it("then Gemini's retryDelay, rounded up", function()
      local _, _, lines = map(429, BODY.gemini_429, { headers = { ["x-ratelimit-reset-requests"] = "6m0s" } })
      assert.equal("29", header(lines, "retry-after"))
      _, _, lines = map(429, (BODY.gemini_429:gsub("28%.4s", "0.2s")))
      assert.equal("1", header(lines, "retry-after"))
    end)

    it("then OpenAI's x-ratelimit-reset-requests, then -tokens", function()
      local _, _, lines = map(429, BODY.openai, { headers = { ["x-ratelimit-reset-requests"] = "6m0s",
                                                             ["x-ratelimit-reset-tokens"] = "1s" } })
      assert.equal("360", header(lines, "retry-after"))
      _, _, lines = map(429, BODY.openai, { headers = { ["x-ratelimit-reset-tokens"] = "1h2m3.5s" } })
      assert.equal("3724", header(lines, "retry-after"))
      _, _, lines = map(429, BODY.openai, { headers = { ["x-ratelimit-reset-tokens"] = "250ms" } })
      assert.equal("1", header(lines, "retry-after"))
    end)

    it("else retry_after seconds (default 1)", function()
      local _, _, lines = map(429, BODY.azure_429)
      assert.equal("1", header(lines, "retry-after"))
      _, _, lines = map(429, BODY.azure_429, { conf = { retry_after = 20 },
                                               headers = { ["x-ratelimit-reset-requests"] = "soon" } })
      assert.equal("20", header(lines, "retry-after"))
    end)

    it("is not sent with other statuses, even when the provider sent one", function()
      local _, _, lines = map(503, BODY.openai_500, { headers = { ["Retry-After"] = "30" } })
      assert.is_nil(header(lines, "retry-after"))
      _, _, lines = map(400, BODY.gemini_429)
      assert.is_nil(header(lines, "retry-after"))
    end)
  end)
end)

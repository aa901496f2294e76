-- aigw.errors: error responses in the client's envelope.

local h = require "aigw.test.helpers"
local errors = require "aigw.errors"
local cjson = require "cjson"

local function respond(path, ...)
  local req = h.request{ method = "POST", path = path, headers = { ["x-request-id"] = "rid-1" } }
  return h.with_request(req, errors.response, ...)
end

describe("aigw.errors", function()
  it("answers OpenAI-style paths in OpenAI's envelope", function()
    local status, body, headers = respond("/v1/chat/completions", 429, "rate_limited", "too many")
    assert.equal(429, status)
    assert.equal("Content-Type: application/json\r\n", headers)
    assert.equal("\n", body:sub(-1))
    local e = cjson.decode(body)
    assert.same({ message = "too many", type = "rate_limit_error", code = "rate_limited",
                  param = cjson.null, request_id = "rid-1" }, e.error)
    assert.matches('"param":null', body, 1, true)
  end)

  it("answers /messages in Anthropic's envelope", function()
    local status, body = respond("/v1/messages", 401, "invalid_api_key", "invalid API key")
    assert.equal(401, status)
    assert.same({ type = "error", error = { type = "authentication_error", message = "invalid API key" },
                  request_id = "rid-1" }, cjson.decode(body))
  end)

  it("appends extra header lines after the content type", function()
    local _, _, headers = respond("/v1/chat/completions", 429, "rate_limited", "x", "Retry-After: 3\r\n")
    assert.equal("Content-Type: application/json\r\nRetry-After: 3\r\n", headers)
  end)

  it("derives the type from the status", function()
    local cases = {
      { 400, "invalid_request_error", "invalid_request_error" },
      { 405, "invalid_request_error", "invalid_request_error" },
      { 401, "authentication_error", "authentication_error" },
      { 403, "permission_error", "permission_error" },
      { 404, "not_found_error", "not_found_error" },
      { 413, "invalid_request_error", "request_too_large" },
      { 429, "rate_limit_error", "rate_limit_error" },
      { 500, "server_error", "api_error" },
      { 502, "server_error", "api_error" },
      { 503, "service_unavailable", "overloaded_error" },
      { 504, "timeout", "timeout_error" },
    }
    for _, c in ipairs(cases) do
      local _, body = respond("/v1/chat/completions", c[1], "c", "m")
      assert.equal(c[2], cjson.decode(body).error.type, "OpenAI type for " .. c[1])
      _, body = respond("/v1/messages", c[1], "c", "m")
      assert.equal(c[3], cjson.decode(body).error.type, "Anthropic type for " .. c[1])
    end
  end)

  it("escapes the message", function()
    local _, body = respond("/v1/chat/completions", 400, "bad", 'a "quoted"\nline')
    assert.equal('a "quoted"\nline', cjson.decode(body).error.message)
  end)

  it("needs a request", function()
    assert.has_error(function() errors.response(400, "x", "y") end, "no request in this context")
  end)
end)

-- aigw.errors -- error responses in the client's envelope.
--
-- OpenAI-style paths get {"error":{"message","type","code","param",
-- "request_id"}}; Anthropic's /v1/messages gets {"type":"error","error":
-- {"type","message"},"request_id"}. The request id is the same value as
-- the response's x-request-id header.

local cjson = require "cjson"
local request = require "aigw.request"

local M = {}

local OPENAI_TYPES = {
  [400] = "invalid_request_error", [401] = "authentication_error", [403] = "permission_error",
  [404] = "not_found_error", [405] = "invalid_request_error", [413] = "invalid_request_error",
  [429] = "rate_limit_error", [503] = "service_unavailable", [504] = "timeout",
}
local ANTHROPIC_TYPES = {
  [400] = "invalid_request_error", [401] = "authentication_error", [403] = "permission_error",
  [404] = "not_found_error", [405] = "invalid_request_error", [413] = "request_too_large",
  [429] = "rate_limit_error", [503] = "overloaded_error", [504] = "timeout_error",
}

local JSON_HEADERS = "Content-Type: application/json\r\n"

local function is_anthropic(path)
  return path:sub(-9) == "/messages" or path:sub(-22) == "/messages/count_tokens"
end

-- Returns status, body, header lines: what a phase returns to answer.
function M.response(status, code, message, extra_headers)
  local id = request.id()
  local body
  if is_anthropic(request.get_path()) then
    body = cjson.encode({
      type = "error",
      error = { type = ANTHROPIC_TYPES[status] or "api_error", message = message },
      request_id = id,
    })
  else
    body = '{"error":' .. cjson.encode({
      message = message, type = OPENAI_TYPES[status] or "server_error", code = code,
      request_id = id,
    }):sub(1, -2) .. ',"param":null}}'
  end
  return status, body .. "\n", JSON_HEADERS .. (extra_headers or "")
end

return M

-- aigw.errors -- error responses in the client's envelope.
--
-- OpenAI-style paths get {"error":{"message","type","code","param",
-- "request_id"}}; Anthropic's /v1/messages gets {"type":"error","error":
-- {"type","message"},"request_id"}. The request id is the same value as
-- the response's x-request-id header.

local cjson = require "cjson"
local request = require "aigw.request"

local M = {}

-- The error `type` for a status comes from the core (aigw_error_type), so
-- errors made in C and in Lua can never disagree.
local ffi = require "ffi"
require "aigw.ffi_defs"
local C = ffi.C

local function error_type(status, anthropic)
  return ffi.string(C.aigw_error_type(status, anthropic and 1 or 0))
end

local JSON_HEADERS = "Content-Type: application/json\r\n"

-- Returns status, body, header lines: what a phase returns to answer.
function M.response(status, code, message, extra_headers)
  local id = request.id()
  local body
  if request.is_anthropic() then
    body = cjson.encode({
      type = "error",
      error = { type = error_type(status, true), message = message },
      request_id = id,
    })
    -- Anthropic's SDKs read the id from request-id.
    extra_headers = "request-id: " .. id .. "\r\n" .. (extra_headers or "")
  else
    body = '{"error":' .. cjson.encode({
      message = message, type = error_type(status, false), code = code,
      request_id = id,
    }):sub(1, -2) .. ',"param":null}}'
  end
  return status, body .. "\n", JSON_HEADERS .. (extra_headers or "")
end

return M

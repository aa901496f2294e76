-- error-mapping -- a provider's error answer in the envelope the client's
-- SDK understands: OpenAI's {"error":{message,type,code,param,request_id}}
-- on OpenAI-style paths, Anthropic's {"type":"error","error":{type,message}}
-- on /v1/messages, whatever the provider's own format (OpenAI, Azure,
-- Anthropic, Gemini, or not JSON at all). The provider's message is kept.
--
-- Statuses: a provider 5xx becomes 502 with the provider's status in the
-- message (keep_5xx = true passes it on), its 504 and 408 become 504;
-- 401 and 403 become 502 (the provider refused the gateway's own
-- credentials: nothing the client can fix, and never to be mistaken for
-- the client's key being wrong); other 4xx keep their status. A 429 keeps
-- the provider's Retry-After, or gets one from Gemini's retryDelay or
-- OpenAI's x-ratelimit-reset-* headers, else retry_after seconds.
--
-- The core hands this plugin each upstream error answer whole (the plugin
-- sets filter_errors), so the answer is reshaped before any byte of it
-- leaves. Errors aigw makes itself are already in the envelope.

local aigw = require "aigw"
local json = require "aigw.json"
local hub = require "aigw.engine.protocols.openai"

local plugin = {
  name = "error-mapping",
  priority = 100,
  jit = true,   -- every loop is bounded by the config or the input
  filter_errors = true,
  schema = {
    keep_5xx = { type = "boolean", default = false },
    retry_after = { type = "number", default = 1 },
  },
}

local type, tostring, tonumber = type, tostring, tonumber

-- message, provider's code or type, retry delay (seconds) from the body:
-- read by the hub format's error reader, which reads every provider's
-- envelope (OpenAI's, Azure's, Anthropic's, Gemini's and its RetryInfo).
local function read_body(status, body)
  local d = json.decode(body or "")
  if type(d) ~= "table" then
    local text = tostring(body or ""):gsub("%s+", " "):match("^ ?(.-) ?$"):sub(1, 200)
    return text ~= "" and text or nil
  end
  local e = hub.error_parse(status, d)
  return e.message, e.code, e.retry_after
end

-- "1s", "6m0s", "250ms", "1h2m3.5s" (OpenAI's reset headers) -> seconds.
local function duration(s)
  if type(s) ~= "string" then return nil end
  local total, any = 0, false
  for n, unit in s:gmatch("([%d.]+)(%a+)") do
    local v, k = tonumber(n), ({ h = 3600, m = 60, s = 1, ms = 0.001 })[unit]
    if not v or not k then return nil end
    total, any = total + v * k, true
  end
  return any and math.max(1, math.ceil(total)) or nil
end

local function client_code(status)
  if status == 429 then return "rate_limit_exceeded" end
  if status == 404 then return "not_found" end
  if status == 413 then return "request_too_large" end
  return "invalid_request"
end

function plugin.header_filter(conf, ctx)
  local up = ctx.upstream_status
  if not up or up < 400 or not ctx.upstream_body then return end
  local resp = aigw.response
  local msg, code, delay = read_body(up, ctx.upstream_body)
  local who = "provider " .. tostring(ctx.provider or "upstream")
  msg = msg or ("no error message (status " .. up .. ")")
  local status = up
  local ecode  -- every branch below sets it
  if up == 504 or up == 408 then
    status, ecode = 504, "upstream_timeout"
    msg = who .. " timed out (" .. up .. "): " .. msg
  elseif up >= 500 then
    if not conf.keep_5xx then status = 502 end
    ecode = "upstream_error"
    msg = who .. " answered " .. up .. (code and (" " .. code) or "") .. ": " .. msg
  elseif up == 401 or up == 403 then
    status, ecode = 502, "upstream_auth_failed"
    msg = who .. " refused the gateway's credentials (" .. up .. "): " .. msg
  else
    -- Azure's codes can be the status itself ("404", "429"): no code to keep.
    ecode = type(code) == "string" and not code:match("^%d+$") and code:lower() or client_code(up)
  end
  local retry_after
  if status == 429 then
    retry_after = resp.get_header("retry-after") or delay
      or duration(resp.get_header("x-ratelimit-reset-requests"))
      or duration(resp.get_header("x-ratelimit-reset-tokens")) or conf.retry_after
  end
  local _, body = aigw.errors.response(status, ecode, msg)
  ctx.mapped_error = body
  resp.set_status(status)
  resp.set_header("Content-Type", "application/json")
  resp.set_header("Retry-After", retry_after and tostring(retry_after) or nil)
  resp.filter_body()
end

function plugin.body_filter(_, ctx, _, eof)
  local body = ctx.mapped_error
  if not body then return nil end
  if eof then return body end
  return ""
end

return plugin

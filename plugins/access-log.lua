-- access-log -- one line per request once its response is complete:
--
--   access request_id=... method=POST path=/v1/chat/completions status=200
--     ms=812 provider=anthropic model=claude-3-5-haiku-latest
--     prompt_tokens=12 completion_tokens=40 total_tokens=52 cost=0.000170
--
-- Token counts and cost are those of aigw.engine.reply (ctx.usage, ctx.cost):
-- exactly what the provider reported, streams included; `partial=true`
-- marks a stream cut short (the counts seen until then). `attempts` is
-- how many targets a model alias tried (the last one answered). A consumer field
-- names which gateway key was used (its position in api_keys, never the
-- key). Lines go to the gateway's log at info level, formatted by the core
-- in the log's format (log_format: text, or one JSON object per line with
-- typed fields; docs/configuration.md lists them).

local ffi = require "ffi"
local exdata = require "thread.exdata"
require "aigw.ffi_defs"

local plugin = {
  name = "access-log",
  priority = 10,
  jit = true,   -- every loop is bounded by the config or the input
  schema = {},
}

local C = ffi.C
local NAN = 0 / 0
local type, tostring, tonumber = type, tostring, tonumber

-- A string field (nil: left out) as pointer and length.
local function str(v)
  if v == nil then return nil, 0 end
  if type(v) ~= "string" then v = tostring(v) end
  return v, #v
end

local function num(v)
  return tonumber(v) or NAN
end

-- The core writes the line (aigw_ffi_log_access): request id, method, path
-- and ms from the request, the rest from here; NaN and nil are fields left
-- out.
function plugin.log(_, ctx)
  if C.aigw_ffi_log_enabled(1) == 0 then return end
  local r = exdata()
  if r == nil then return end
  local provider, provider_n = str(ctx.provider)
  local model, model_n = str(ctx.model)
  local consumer, consumer_s, consumer_n = ctx.consumer, nil, 0
  if consumer ~= nil and type(consumer) ~= "number" then
    consumer_s, consumer_n = str(consumer)
  end
  local u = ctx.usage
  local p, c, t, ca, re, cc, partial = NAN, NAN, NAN, NAN, NAN, NAN, 0
  if u then
    p, c, t = num(u.prompt_tokens), num(u.completion_tokens), num(u.total_tokens)
    ca, re, cc = num(u.cached_tokens), num(u.reasoning_tokens), num(u.cache_creation_tokens)
    if u.partial then partial = 1 end
  end
  C.aigw_ffi_log_access(ffi.cast("aigw_req_t *", r), num(ctx.status), provider, provider_n,
                        model, model_n, num(ctx.attempts), consumer_s and NAN or num(consumer),
                        consumer_s, consumer_n, p, c, t, ca, re, cc, partial, num(ctx.cost))
end

return plugin

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
-- key). Lines go to the gateway's log at info level.

local aigw = require "aigw"

local plugin = {
  name = "access-log",
  priority = 10,
  jit = true,   -- every loop is bounded by the config or the input
  schema = {},
}

local format = string.format
local floor = math.floor

local USAGE_FIELDS = { "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
                       "reasoning_tokens", "cache_creation_tokens" }

function plugin.log(_, ctx)
  if not aigw.log.enabled("info") then return end
  local req = aigw.request
  local f = {
    request_id = req.id(),
    method = req.get_method(),
    path = req.get_path(),
    status = ctx.status,
    ms = floor((aigw.monotonic() - req.start_time()) * 1000 + 0.5),
    provider = ctx.provider,
    model = ctx.model,
    attempts = ctx.attempts,
    consumer = ctx.consumer,
  }
  local u = ctx.usage
  if u then
    for _, k in ipairs(USAGE_FIELDS) do f[k] = u[k] end
    if u.partial then f.partial = true end
  end
  if ctx.cost then f.cost = format("%.6f", ctx.cost) end
  aigw.log.info("access", f)
end

return plugin

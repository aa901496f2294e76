-- conf/examples/seed-endpoints.lua -- the seed gateways' own endpoints,
-- served by aigw as config: two routes whose request and answer formats are
-- turned into chat completions by route adapters (adapters/seed-*.lua
-- under the prefix), so any configured provider answers them.
--
--   POST /api/v1/chat                         seed-chat
--        {message, context, model_preference, stream}
--        -> {response, model_used, usage, cost, processing_time_ms}
--   POST /api/v1/inference/text-generation    seed-text-generation
--        {model, prompt, max_tokens, temperature, top_p, stream}
--        -> {generated_text, model, finish_reason, usage, cost, processing_time_ms}
--
-- The formats (streams included) are described at the top of each adapter.
-- The OpenAI-style endpoints (/v1/chat/completions, /v1/messages, ...) are
-- still served alongside.
--
-- Run: aigw run conf/examples/seed-endpoints.lua
--   curl -s localhost:8080/api/v1/chat -d '{"message":"hello"}'
--   curl -sN localhost:8080/api/v1/inference/text-generation \
--        -d '{"prompt":"hello","model":"gpt-4o-mini","max_tokens":64,"stream":true}'
--
-- Everything comes from the environment, as in conf/gateway.lua:
--   AIGW_LISTEN, AIGW_ADMIN_LISTEN ("off": none), AIGW_WORKERS, AIGW_LOG_LEVEL
--   AIGW_API_KEYS             gateway keys (empty: loopback clients only)
--   OPENAI_API_KEY, OPENAI_BASE_URL
--   ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL   (the anthropic provider is only
--                             configured when ANTHROPIC_API_KEY is set)
--   AIGW_SEED_DEFAULT_MODEL   the model used when a request names none
--                             (default "echo", the built-in model)

local env = os.getenv

local function list(s)
  local t = {}
  for item in (s or ""):gmatch("[^,%s]+") do t[#t + 1] = item end
  return t
end

local providers = {
  openai = {
    kind     = "openai",
    base_url = env("OPENAI_BASE_URL") or "https://api.openai.com/v1",
    api_key  = env("OPENAI_API_KEY"),
  },
  mock = { kind = "mock" },
}

-- claude-* models (and anthropic/<model>) go to Anthropic when a key is set.
if env("ANTHROPIC_API_KEY") then
  providers.anthropic = {
    kind     = "anthropic",
    base_url = env("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
    api_key  = env("ANTHROPIC_API_KEY"),
  }
end

return {
  listen       = env("AIGW_LISTEN") or "127.0.0.1:8080",
  admin_listen = env("AIGW_ADMIN_LISTEN") ~= "off" and (env("AIGW_ADMIN_LISTEN") or "127.0.0.1:9090"),
  workers      = tonumber(env("AIGW_WORKERS") or "") or "auto",
  log_level    = env("AIGW_LOG_LEVEL") or "info",
  log_format   = env("AIGW_LOG_FORMAT") or "text",

  api_keys = list(env("AIGW_API_KEYS")),
  admin_keys = list(env("AIGW_ADMIN_KEYS")),
  plugins  = { "key-auth", "error-mapping" },

  providers = providers,

  -- Names the seed clients send as model_preference / model.
  models = {
    fast = { provider = "openai", model = "gpt-4o-mini" },
    smart = { provider = "openai", model = "gpt-4o" },
  },

  routes = {
    -- adapter: a Lua module (found under plugins/ or lua/) with
    -- request(body, ctx) -> chat request, response(chat answer, ctx) ->
    -- answer, and start/chunk/finish/error_event for streams.
    -- method defaults to POST; other methods get 405.
    { path = "/api/v1/chat", adapter = "seed-chat" },
    { path = "/api/v1/inference/text-generation", adapter = "seed-text-generation" },
  },
}

-- conf/gateway.lua -- the default gateway: runs anywhere unchanged.
--
-- Everything here comes from the environment, so the same file serves a
-- laptop (no keys: loopback clients only, the built-in `echo` model answers)
-- and a deployment (AIGW_API_KEYS, provider keys and base URLs set).
-- See docs/configuration.md for every field.

local env = os.getenv

local function list(s)
  local t = {}
  for item in (s or ""):gmatch("[^,%s]+") do t[#t + 1] = item end
  return t
end

return {
  listen       = env("AIGW_LISTEN") or "127.0.0.1:8080",
  -- "off" turns the admin listener off.
  admin_listen = env("AIGW_ADMIN_LISTEN") ~= "off" and (env("AIGW_ADMIN_LISTEN") or "127.0.0.1:9090"),
  workers      = tonumber(env("AIGW_WORKERS") or "") or "auto",
  log_level    = env("AIGW_LOG_LEVEL") or "info",
  -- "text" (key=value) or "json" (one object per line).
  log_format   = env("AIGW_LOG_FORMAT") or "text",

  -- Gateway keys clients must present. Empty: only loopback clients are
  -- served, and `aigw run` refuses a non-loopback listen address.
  api_keys = list(env("AIGW_API_KEYS")),

  -- Keys for the admin listener's /admin/* paths (gateway keys do not open
  -- them). Empty: those paths serve loopback clients only, never a browser,
  -- and `aigw run` refuses a non-loopback admin_listen. /metrics, /health
  -- and /ready need no key.
  admin_keys = list(env("AIGW_ADMIN_KEYS")),

  server = {
    max_body_size         = "10m",
    max_header_size       = "32k",
    max_connections       = 10000,
    client_header_timeout = 10,
    client_body_timeout   = 30,
    client_body_total_timeout = 120,
    max_buffered_bodies   = "512m",
    keepalive_timeout     = 75,
    send_timeout          = 30,
    drain_timeout         = 10,
  },

  shared = {
    limits = "8m",
    cache  = "32m",
  },

  -- key-auth: gateway keys; error-mapping: provider errors in the client's
  -- envelope; access-log: one line per request with tokens and cost.
  plugins = { "key-auth", "error-mapping", "access-log" },

  -- Redis for cluster-wide state (aigw.redis). Unset REDIS_URL: not used.
  redis = {
    url             = env("REDIS_URL"),
    connect_timeout = 1,
    timeout         = 1,
  },

  -- Bare model names go by the providers' naming: claude-* to anthropic,
  -- gemini-* to gemini, any other to openai; "provider/model" picks one.
  -- Base URLs follow each SDK's convention (OpenAI's includes /v1).
  providers = {
    openai = {
      kind     = "openai",
      base_url = env("OPENAI_BASE_URL") or "https://api.openai.com/v1",
      api_key  = env("OPENAI_API_KEY"),
    },
    anthropic = {
      kind     = "anthropic",
      base_url = env("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
      api_key  = env("ANTHROPIC_API_KEY"),
    },
    gemini = {
      kind     = "gemini",
      base_url = env("GEMINI_BASE_URL") or "https://generativelanguage.googleapis.com",
      api_key  = env("GEMINI_API_KEY"),
    },
    mock = { kind = "mock" },
  },
}

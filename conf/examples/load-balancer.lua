-- conf/examples/load-balancer.lua -- the seed gateways' load-balancer
-- pattern as config: several identical OpenAI-compatible backends (vLLM,
-- llama.cpp, Ollama, ...) behind one model name, balanced round-robin,
-- least-connections or by weight, each probed every 10 s, with failover to
-- the next backend and a bounded number of attempts.
--
-- Run: AIGW_BACKENDS=http://10.0.0.1:8000/v1,http://10.0.0.2:8000/v1 \
--        aigw run conf/examples/load-balancer.lua
--   curl -s localhost:8080/v1/chat/completions \
--        -d '{"model":"llm","messages":[{"role":"user","content":"hi"}]}'
--   curl -s localhost:9090/status     # per backend: requests, failures,
--   curl -s localhost:9090/metrics    # in flight, latency, breaker, health
--
-- Every setting comes from the environment:
--   AIGW_BACKENDS        comma-separated base URLs (with /v1); default two
--                        local servers, http://127.0.0.1:8000/v1 and :8001/v1
--   AIGW_BACKEND_WEIGHTS comma-separated weights, one per backend (weighted)
--   AIGW_BACKEND_KEY     the key the backends expect, if any
--   AIGW_LB_MODEL        the name clients send (default "llm")
--   AIGW_LB_UPSTREAM_MODEL  the name the backends serve (default: the same)
--   AIGW_LB_STRATEGY     round-robin (default), least-busy or weighted
--   AIGW_LB_ATTEMPTS     attempts per request, failover included (default 3)
--   AIGW_HEALTH_PATH     the probe (default /models: GET <base URL>/models)
--   AIGW_HEALTH_INTERVAL seconds between probes (default 10)
--   AIGW_LISTEN, AIGW_ADMIN_LISTEN ("off": none), AIGW_WORKERS, AIGW_LOG_LEVEL,
--   AIGW_API_KEYS        as in conf/gateway.lua

local env = os.getenv

local function list(s)
  local t = {}
  for item in (s or ""):gmatch("[^,%s]+") do t[#t + 1] = item end
  return t
end

local backends = list(env("AIGW_BACKENDS") or "http://127.0.0.1:8000/v1,http://127.0.0.1:8001/v1")
if #backends == 0 then error("AIGW_BACKENDS: set it to the backends' base URLs, comma-separated", 0) end
local weights = list(env("AIGW_BACKEND_WEIGHTS"))
local model = env("AIGW_LB_MODEL") or "llm"
local upstream_model = env("AIGW_LB_UPSTREAM_MODEL") or model

local providers, targets = {}, {}
for i, url in ipairs(backends) do
  local name = "backend" .. i
  providers[name] = {
    kind = "openai-compatible",
    base_url = url,
    api_key = env("AIGW_BACKEND_KEY"),
    timeouts = { connect = 2, read = 120, total = 600 },
    health_check = {
      path = env("AIGW_HEALTH_PATH") or "/models",
      interval = tonumber(env("AIGW_HEALTH_INTERVAL") or "") or 10,
      timeout = 3,
      unhealthy = 2,      -- two failed probes in a row take a backend out
      healthy = 1,        -- one good probe brings it back
    },
  }
  targets[i] = { provider = name, model = upstream_model, weight = tonumber(weights[i] or "") or 1,
                 ttfb_timeout = 30 }
end

return {
  listen       = env("AIGW_LISTEN") or "127.0.0.1:8080",
  admin_listen = env("AIGW_ADMIN_LISTEN") ~= "off" and (env("AIGW_ADMIN_LISTEN") or "127.0.0.1:9090"),
  workers      = tonumber(env("AIGW_WORKERS") or "") or "auto",
  log_level    = env("AIGW_LOG_LEVEL") or "info",
  log_format   = env("AIGW_LOG_FORMAT") or "text",
  api_keys     = list(env("AIGW_API_KEYS")),
  admin_keys   = list(env("AIGW_ADMIN_KEYS")),
  plugins      = { "key-auth", "error-mapping", "access-log" },
  providers    = providers,
  models = {
    [model] = {
      strategy = env("AIGW_LB_STRATEGY") or "round-robin",
      targets = targets,
      -- Failover: a backend that refuses, times out, answers 5xx or 429
      -- before its first byte hands the request to the next one.
      retry = { attempts = tonumber(env("AIGW_LB_ATTEMPTS") or "") or 3,
                on = { "connect", "timeout", "429", "5xx" }, backoff = 0.1, max_backoff = 2 },
      -- Passive health: five failures in a row take a backend out for 30 s.
      breaker = { failures = 5, cooldown = 30 },
    },
  },
}

-- aigw configuration for tests/bench/run.sh with AIGW_CONF=tests/bench/aigw-balanced.lua:
-- routing on. "gpt-4o-mini" is a model alias over two OpenAI-kind targets on the mock,
-- balanced round-robin with failover (two attempts), a circuit breaker and per-target
-- counters in the shared zone; each request is an attempt whose head waits for the
-- upstream's first body byte. The default plugin chain is on. Streams keep the pinned
-- route of aigw-bench.lua.
return {
  listen = "127.0.0.1:18080", admin_listen = false, workers = 1, log_level = "info",
  api_keys = { "sk-bench-0001" },
  plugins = { "key-auth", "error-mapping", "access-log" },
  providers = {
    primary = { kind = "openai", base_url = "http://127.0.0.1:18000/v1", api_key = "sk-upstream-bench",
                keepalive = { max_idle = 256, idle_timeout = 60 } },
    secondary = { kind = "openai", base_url = "http://127.0.0.1:18000/v1", api_key = "sk-upstream-bench",
                  keepalive = { max_idle = 256, idle_timeout = 60 } },
    bench_stream = { kind = "openai", base_url = "http://127.0.0.1:18000/stream/v1", api_key = "sk-upstream-bench" },
  },
  models = {
    ["gpt-4o-mini"] = {
      strategy = "round-robin",
      targets = { { provider = "primary", model = "gpt-4o-mini", ttfb_timeout = 30 },
                  { provider = "secondary", model = "gpt-4o-mini", ttfb_timeout = 30 } },
    },
  },
  routes = {
    { path = "/stream/v1/chat/completions", provider = "bench_stream", endpoint = "chat/completions" },
  },
}

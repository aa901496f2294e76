-- aigw configuration for tests/bench/run.sh with AIGW_CONF=tests/bench/aigw-routed.lua:
-- the request path as clients meet it. The default plugin chain (key-auth, error-mapping,
-- access-log, its line at info as in the default config), and chat
-- requests routed by their model ("gpt-4o-mini" -> the provider named openai), with the
-- answer's usage read on the way back. Streams keep the pinned route of aigw-bench.lua.
return {
  listen = "127.0.0.1:18080", admin_listen = false, workers = 1, log_level = "info",
  api_keys = { "sk-bench-0001" },
  plugins = { "key-auth", "error-mapping", "access-log" },
  providers = {
    openai = { kind = "openai", base_url = "http://127.0.0.1:18000/v1", api_key = "sk-upstream-bench",
               keepalive = { max_idle = 256, idle_timeout = 60 } },
    bench_stream = { kind = "openai", base_url = "http://127.0.0.1:18000/stream/v1", api_key = "sk-upstream-bench" },
  },
  routes = {
    { path = "/stream/v1/chat/completions", provider = "bench_stream", endpoint = "chat/completions" },
  },
}

-- aigw configuration for tests/bench/run.sh (make bench).
-- One worker, the default plugin chain (key-auth, error-mapping, access-log, its line at info
-- as in the default config), two providers pinned by route to the
-- mock upstream (tests/bench/mock, 127.0.0.1:18000) with upstream keep-alive.  Clients send
-- "Authorization: Bearer sk-bench-0001"; the mock gets the provider key instead.
-- A route pins a path to a provider regardless of the body's model; the provider forwards to
-- base_url .. "/" .. endpoint.
return {
  listen = "127.0.0.1:18080", admin_listen = false, workers = 1, log_level = "info",
  api_keys = { "sk-bench-0001" },
  plugins = { "key-auth", "error-mapping", "access-log" },
  providers = {
    bench = { kind = "openai", base_url = "http://127.0.0.1:18000/v1", api_key = "sk-upstream-bench",
              keepalive = { max_idle = 256, idle_timeout = 60 } },
    bench_stream = { kind = "openai", base_url = "http://127.0.0.1:18000/stream/v1", api_key = "sk-upstream-bench" },
  },
  routes = {
    { path = "/v1/chat/completions", provider = "bench", endpoint = "chat/completions" },
    { path = "/stream/v1/chat/completions", provider = "bench_stream", endpoint = "chat/completions" },
  },
}

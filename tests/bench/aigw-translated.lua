-- aigw configuration for tests/bench/run.sh with AIGW_CONF=tests/bench/aigw-translated.lua:
-- an OpenAI client served by Anthropic. "gpt-4o-mini" is an alias for an anthropic-kind
-- provider on the mock (POST /anthropic/v1/messages answers the same completion in
-- Anthropic's format), so each non-stream request is translated to Messages, fetched whole,
-- and its answer translated back, usage and cost included. The default plugin chain is on.
-- Streams keep the pinned route of aigw-bench.lua.
return {
  listen = "127.0.0.1:18080", admin_listen = false, workers = 1, log_level = "info",
  api_keys = { "sk-bench-0001" },
  plugins = { "key-auth", "error-mapping", "access-log" },
  providers = {
    anthropic = { kind = "anthropic", base_url = "http://127.0.0.1:18000/anthropic", api_key = "sk-upstream-bench",
                  keepalive = { max_idle = 256, idle_timeout = 60 } },
    bench_stream = { kind = "openai", base_url = "http://127.0.0.1:18000/stream/v1", api_key = "sk-upstream-bench" },
  },
  models = { ["gpt-4o-mini"] = { provider = "anthropic", model = "claude-3-5-haiku-latest" } },
  routes = {
    { path = "/stream/v1/chat/completions", provider = "bench_stream", endpoint = "chat/completions" },
  },
}

-- wrk script for tests/bench/run.sh: POST an OpenAI chat request with a Bearer key.
-- Environment:
--   WRK_BODY     path to the JSON request body (required; run.sh passes an absolute path)
--   WRK_KEY      gateway key sent as "Authorization: Bearer <key>" (default sk-bench-0001)
--   WRK_HEADERS  extra headers, "Name: value" separated by "|" (optional)
-- Prints one machine-readable line at the end:
--   RESULT rps=<req/s> p50_us=.. p90_us=.. p99_us=.. max_us=.. reqs=.. non2xx=.. errors=.. bytes=..
local body_path = assert(os.getenv("WRK_BODY"), "set WRK_BODY")
local f = assert(io.open(body_path, "rb"), "cannot open " .. body_path)
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("WRK_KEY") or "sk-bench-0001")
wrk.headers["User-Agent"] = "OpenAI/Python 1.55.0"
local extra = os.getenv("WRK_HEADERS") or ""
for h in string.gmatch(extra, "[^|]+") do
  local k, v = h:match("^%s*([^:]+):%s*(.-)%s*$")
  if k then wrk.headers[k] = v end
end

function done(summary, latency)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local non2xx = e.status
  local errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d reqs=%d non2xx=%d errors=%d bytes=%d\n",
    summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.requests, non2xx, errors, summary.bytes))
end

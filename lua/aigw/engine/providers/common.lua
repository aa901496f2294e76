-- aigw.engine.providers.common -- what every network provider shares: its core
-- target (connection pool, TLS, the headers it sets and drops) and the
-- same headers as lines, for the requests the runtime fetches itself.

local M = {}

-- headers: name -> value, or false to drop the client's header of that
-- name. The client's credentials never travel: authorization, x-api-key,
-- x-goog-api-key and api-key are dropped unless the provider sets them. Answers come
-- unencoded, so that usage can be read and formats translated.
function M.new(self, conf, headers)
  headers["authorization"] = headers["authorization"] or false
  headers["x-api-key"] = headers["x-api-key"] or false
  headers["x-goog-api-key"] = headers["x-goog-api-key"] or false
  headers["api-key"] = headers["api-key"] or false
  headers["accept-encoding"] = "identity"
  for k, v in pairs(conf.headers or {}) do headers[k:lower()] = v end
  self.target = aigw_core.target {
    url = conf.base_url,
    tls_verify = conf.tls_verify,
    ca_file = conf.ca_file,
    headers = headers,
    connect_timeout = conf.timeouts.connect,
    read_timeout = conf.timeouts.read,
    total_timeout = conf.timeouts.total,
    max_idle = conf.keepalive.max_idle,
    idle_timeout = conf.keepalive.idle_timeout,
  }
  -- For fetches: the path under the base URL, and the header lines.
  self.base_path = (conf.base_url:match("^https?://[^/]+(/.*)$") or ""):gsub("/+$", "")
  local lines = { "Content-Type: application/json\r\n" }
  local names = {}
  self.sets = {}
  for k, v in pairs(headers) do
    self.sets[k] = true
    if v then names[#names + 1] = k end
  end
  table.sort(names)
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ": " .. headers[k] .. "\r\n" end
  self.fetch_lines = table.concat(lines)
  self.timeouts = conf.timeouts
  return self
end

-- A path segment from a client's value (model or deployment name).
function M.escape(s)
  return (s:gsub("[^%w._~-]", function(c) return string.format("%%%02X", c:byte()) end))
end

return M

-- aigw.providers.openai -- OpenAI and any OpenAI-compatible server.
--
-- Providers are data: a base URL (including /v1, as the OpenAI SDK has it),
-- a key sent as a Bearer token, optional extra headers. The client's own
-- credentials are never forwarded.

local M = {}
M.__index = M

function M.new(name, conf)
  local headers = {
    authorization = conf.api_key and ("Bearer " .. conf.api_key) or false,
    ["x-api-key"] = false,
  }
  for k, v in pairs(conf.headers or {}) do headers[k:lower()] = v end
  local target = aigw_core.target {
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
  return setmetatable({ name = name, kind = conf.kind, target = target }, M)
end

-- Forwards the request to <base_url>/<endpoint>; body nil keeps the
-- client's bytes untouched. Upstream paths are built once per endpoint.
local paths = setmetatable({}, { __index = function(t, endpoint)
  local p = "/" .. endpoint
  t[endpoint] = p
  return p
end })

function M:serve(ctx, endpoint, body)
  return "proxy", self.target, paths[endpoint], body
end

return M

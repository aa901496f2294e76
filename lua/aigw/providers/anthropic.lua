-- aigw.providers.anthropic -- Anthropic's Messages API: base_url without
-- the version (https://api.anthropic.com), the key in x-api-key, the
-- anthropic-version header, and max_tokens filled in for requests that
-- have none (Anthropic requires it).

local common = require "aigw.providers.common"

local M = {}
M.__index = M

M.format = "anthropic"

function M.new(name, conf)
  local self = setmetatable({ name = name, kind = conf.kind, max_tokens = conf.max_tokens }, M)
  return common.new(self, conf, {
    ["x-api-key"] = conf.api_key or false,
    ["anthropic-version"] = conf.version,
  })
end

local PATHS = { messages = "/v1/messages", ["messages/count_tokens"] = "/v1/messages/count_tokens",
                ["chat/completions"] = "/v1/messages" }

function M:path(endpoint)
  return PATHS[endpoint]
end

return M

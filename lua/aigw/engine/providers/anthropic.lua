-- aigw.engine.providers.anthropic -- Anthropic's Messages API: base_url without
-- the version (https://api.anthropic.com), the key in x-api-key, the
-- anthropic-version header, and max_tokens filled in for requests that
-- have none (Anthropic requires it).

local common = require "aigw.engine.providers.common"

local M = {}
M.__index = M

M.format = "anthropic"
M.protocol = require "aigw.engine.protocols.anthropic"

function M.new(name, conf)
  local self = setmetatable({ name = name, kind = conf.kind, max_tokens = conf.max_tokens,
                              request_opts = { default_max_tokens = conf.max_tokens } }, M)
  return common.new(self, conf, {
    ["x-api-key"] = conf.api_key or false,
    ["anthropic-version"] = conf.version,
  })
end

-- Upstream paths (under the base URL): the format's.
M.path = M.protocol.path

return M

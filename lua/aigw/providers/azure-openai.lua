-- aigw.providers.azure-openai -- Azure OpenAI: the OpenAI wire format under
-- /openai/deployments/{deployment}/..., an api-version query parameter and
-- the key in an api-key header. base_url is the resource's endpoint
-- (https://NAME.openai.azure.com); `deployments` maps model names to
-- deployment names (a model not listed is taken as the deployment's name).

local common = require "aigw.providers.common"

local M = {}
M.__index = M

M.format = "openai"

function M.new(name, conf)
  local self = setmetatable({ name = name, kind = conf.kind, deployments = conf.deployments,
                              query = "?api-version=" .. conf.api_version, paths = {} }, M)
  return common.new(self, conf, { ["api-key"] = conf.api_key or false })
end

function M:path(endpoint, model)
  local key = endpoint .. "\0" .. (model or "")
  local p = self.paths[key]
  if not p then
    local dep = self.deployments[model] or model or ""
    p = "/openai/deployments/" .. common.escape(dep) .. "/" .. endpoint .. self.query
    self.paths[key] = p
  end
  return p
end

return M

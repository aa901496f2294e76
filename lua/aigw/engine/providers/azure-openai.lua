-- aigw.engine.providers.azure-openai -- Azure OpenAI: the OpenAI wire format under
-- /openai/deployments/{deployment}/..., an api-version query parameter and
-- the key in an api-key header. base_url is the resource's endpoint
-- (https://NAME.openai.azure.com); `deployments` maps model names to
-- deployment names (a model not listed is taken as the deployment's name).

local common = require "aigw.engine.providers.common"

local M = {}
M.__index = M

M.format = "openai"
M.protocol = require "aigw.engine.protocols.openai"

function M.new(name, conf)
  local self = setmetatable({ name = name, kind = conf.kind, deployments = conf.deployments,
                              query = "?api-version=" .. conf.api_version, paths = {}, npaths = 0 }, M)
  return common.new(self, conf, { ["api-key"] = conf.api_key or false })
end

-- Paths are kept per (endpoint, model) once built. Model names are the
-- client's: the cache keeps at most PATHS_MAX of them and starts over when
-- full, and a name longer than NAME_MAX (the runtime refuses those anyway)
-- is built every time, never kept.
local PATHS_MAX, NAME_MAX = 256, 256

local function build(self, endpoint, model)
  local dep = self.deployments[model] or model or ""
  return "/openai/deployments/" .. common.escape(dep) .. "/" .. endpoint .. self.query
end

function M:path(endpoint, model)
  if model and #model > NAME_MAX then return build(self, endpoint, model) end
  local key = endpoint .. "\0" .. (model or "")
  local p = self.paths[key]
  if not p then
    p = build(self, endpoint, model)
    if self.npaths >= PATHS_MAX then self.paths, self.npaths = {}, 0 end
    self.paths[key] = p
    self.npaths = self.npaths + 1
  end
  return p
end

return M

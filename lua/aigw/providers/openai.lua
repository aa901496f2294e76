-- aigw.providers.openai -- OpenAI and any OpenAI-compatible server (vLLM,
-- llama.cpp, Ollama, LM Studio, OpenRouter, DeepSeek, Groq, Mistral,
-- Together...): a base URL that includes the version (/v1), a key sent as
-- a Bearer token, optional extra headers.

local common = require "aigw.providers.common"

local M = {}
M.__index = M

M.format = "openai"

function M.new(name, conf)
  local self = setmetatable({ name = name, kind = conf.kind }, M)
  return common.new(self, conf, {
    authorization = conf.api_key and ("Bearer " .. conf.api_key) or false,
  })
end

-- Upstream paths (under the base URL), built once per endpoint.
local paths = setmetatable({}, { __index = function(t, endpoint)
  local p = "/" .. endpoint
  t[endpoint] = p
  return p
end })

function M:path(endpoint)
  return paths[endpoint]
end

return M

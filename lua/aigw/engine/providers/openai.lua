-- aigw.engine.providers.openai -- OpenAI and any OpenAI-compatible server (vLLM,
-- llama.cpp, Ollama, LM Studio, OpenRouter, DeepSeek, Groq, Mistral,
-- Together...): a base URL that includes the version (/v1), a key sent as
-- a Bearer token, optional extra headers.

local common = require "aigw.engine.providers.common"

local M = {}
M.__index = M

M.format = "openai"
M.protocol = require "aigw.engine.protocols.openai"

function M.new(name, conf)
  local self = setmetatable({ name = name, kind = conf.kind }, M)
  return common.new(self, conf, {
    authorization = conf.api_key and ("Bearer " .. conf.api_key) or false,
  })
end

-- Upstream paths (under the base URL): the format's.
M.path = M.protocol.path

return M

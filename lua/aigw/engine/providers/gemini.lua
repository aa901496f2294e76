-- aigw.engine.providers.gemini -- Google's Gemini API: base_url
-- https://generativelanguage.googleapis.com, the key in x-goog-api-key,
-- models/{model}:generateContent, and :streamGenerateContent?alt=sse for
-- streams.

local common = require "aigw.engine.providers.common"

local M = {}
M.__index = M

M.format = "gemini"
M.protocol = require "aigw.engine.protocols.gemini"

function M.new(name, conf)
  local self = setmetatable({ name = name, kind = conf.kind }, M)
  return common.new(self, conf, { ["x-goog-api-key"] = conf.api_key or false })
end

-- Upstream paths (models/{model}:generateContent, ...): the format's.
M.path = M.protocol.path

return M

-- aigw.providers.gemini -- Google's Gemini API: base_url
-- https://generativelanguage.googleapis.com, the key in x-goog-api-key,
-- models/{model}:generateContent, and :streamGenerateContent?alt=sse for
-- streams.

local common = require "aigw.providers.common"

local M = {}
M.__index = M

M.format = "gemini"

function M.new(name, conf)
  local self = setmetatable({ name = name, kind = conf.kind }, M)
  return common.new(self, conf, { ["x-goog-api-key"] = conf.api_key or false })
end

local METHODS = { ["chat/completions"] = ":generateContent", messages = ":generateContent",
                  ["messages/count_tokens"] = ":countTokens" }

function M:path(endpoint, model, stream)
  local m = METHODS[endpoint]
  if not m then return nil end
  if stream and m == ":generateContent" then m = ":streamGenerateContent?alt=sse" end
  return "/v1beta/models/" .. common.escape((model:gsub("^models/", ""))) .. m
end

return M

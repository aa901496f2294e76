-- seed-chat -- the seed gateways' chat endpoint as a route adapter:
--
--   routes = { { path = "/api/v1/chat", adapter = "seed-chat" } }
--
-- Request (JSON object):
--   message           required, a non-empty string: the user's turn
--   context           optional: a string (system context, sent as a system
--                     message first), or a list of earlier turns
--                     { role = "system"|"user"|"assistant", content = "..." },
--                     oldest first, sent before the message
--   model_preference  optional, a model name or alias as /v1/chat/completions
--                     takes it ("gpt-4o-mini", "anthropic/claude-3-5-haiku-latest",
--                     an alias from `models`); default: AIGW_SEED_DEFAULT_MODEL,
--                     else "echo"
--   stream            optional boolean
--
-- Answer (200, JSON):
--   { "response": "...", "model_used": "...",
--     "usage": { "prompt_tokens": N, "completion_tokens": N, "total_tokens": N },
--     "cost": USD or null, "processing_time_ms": N }
--
-- Stream (text/event-stream):
--   data: {"delta":"..."}                    each piece of the answer
--   data: {"response":"<whole text>","model_used":...,"usage":...,"cost":...,
--          "processing_time_ms":...}
--   data: [DONE]
-- or, when the provider fails mid-stream: data: {"error":{"message":...,"type":...}}
--
-- A bad request gets 400 in the OpenAI error envelope, its message naming
-- the field.

local common = require "adapters.seed-common"

local type, ipairs = type, ipairs

local M = {}

local ROLES = { system = true, user = true, assistant = true }

local function context_messages(ctx_value, out)
  if not common.given(ctx_value) then return true end
  if type(ctx_value) == "string" then
    if ctx_value:find("%S") then out[#out + 1] = { role = "system", content = ctx_value } end
    return true
  end
  if type(ctx_value) ~= "table" then
    return nil, "'context' must be a string or a list of {role, content} turns"
  end
  if next(ctx_value) ~= nil and ctx_value[1] == nil then
    return nil, "'context' must be a string or a list of {role, content} turns"
  end
  for i, turn in ipairs(ctx_value) do
    local field = "'context[" .. i .. "]"
    if type(turn) ~= "table" then return nil, field .. "' must be an object {role, content}" end
    if type(turn.role) ~= "string" or not ROLES[turn.role] then
      return nil, field .. ".role' must be one of system, user, assistant"
    end
    if type(turn.content) ~= "string" then return nil, field .. ".content' must be a string" end
    out[#out + 1] = { role = turn.role, content = turn.content }
  end
  return true
end

function M.request(body)
  local message, err = common.required_string(body, "message")
  if not message then return nil, err end
  local ok, model = common.optional_string(body, "model_preference")
  if not ok then return nil, model end
  local stream
  ok, stream = common.optional_boolean(body, "stream")
  if not ok then return nil, stream end
  local messages = {}
  ok, err = context_messages(body.context, messages)
  if not ok then return nil, err end
  messages[#messages + 1] = { role = "user", content = message }
  return { model = model or common.default_model(), messages = messages, stream = stream or nil }
end

local function final(ctx, text, model)
  return { response = text, model_used = model, usage = common.usage(ctx),
           cost = common.cost(ctx), processing_time_ms = common.processing_time_ms() }
end

function M.response(hub, ctx)
  local text, _, model = common.answer_text(hub)
  return final(ctx, text, model or ctx.model)
end

local writer = common.stream_writer(function(self, text, _, model)
  return final(self.ctx, text, model)
end)
M.start, M.chunk, M.finish, M.error_event = writer.start, writer.chunk, writer.finish, writer.error_event

return M

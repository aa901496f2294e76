-- seed-text-generation -- the seed gateways' text-generation
-- endpoint as a route adapter:
--
--   routes = { { path = "/api/v1/inference/text-generation",
--                adapter = "seed-text-generation" } }
--
-- Request (JSON object):
--   prompt       required, a non-empty string (sent as one user message)
--   model        optional, a model name or alias; default:
--                AIGW_SEED_DEFAULT_MODEL, else "echo"
--   max_tokens   optional, a positive integer
--   temperature  optional, a number in [0, 2]
--   top_p        optional, a number in (0, 1]
--   stream       optional boolean
-- max_tokens, temperature and top_p are carried into the chat request.
--
-- Answer (200, JSON):
--   { "generated_text": "...", "model": "...", "finish_reason": "stop"|"length"|...,
--     "usage": { "prompt_tokens": N, "completion_tokens": N, "total_tokens": N },
--     "cost": USD or null, "processing_time_ms": N }
--
-- Stream (text/event-stream): data: {"delta":"..."} per piece, then the
-- answer's object above (generated_text holding the whole text), then
-- data: [DONE]; a mid-stream failure ends with data: {"error":{...}}.
--
-- A bad request gets 400 in the OpenAI error envelope, its message naming
-- the field.

local common = require "adapters.seed-common"
local json = require "aigw.json"

local M = {}

function M.request(body)
  local prompt, err = common.required_string(body, "prompt")
  if not prompt then return nil, err end
  local ok, model = common.optional_string(body, "model")
  if not ok then return nil, model end
  local max_tokens, temperature, top_p, stream
  ok, max_tokens = common.optional_positive_integer(body, "max_tokens")
  if not ok then return nil, max_tokens end
  ok, temperature = common.optional_number_in(body, "temperature", 0, 2)
  if not ok then return nil, temperature end
  ok, top_p = common.optional_number_in(body, "top_p", 0, 1, true)
  if not ok then return nil, top_p end
  ok, stream = common.optional_boolean(body, "stream")
  if not ok then return nil, stream end
  return {
    model = model or common.default_model(),
    messages = { { role = "user", content = prompt } },
    max_tokens = max_tokens, temperature = temperature, top_p = top_p,
    stream = stream or nil,
  }
end

local function final(ctx, text, finish, model)
  return { generated_text = text, model = model, finish_reason = finish or json.null,
           usage = common.usage(ctx), cost = common.cost(ctx),
           processing_time_ms = common.processing_time_ms() }
end

function M.response(hub, ctx)
  local text, finish, model = common.answer_text(hub)
  return final(ctx, text, finish, model or ctx.model)
end

local writer = common.stream_writer(function(self, text, finish, model)
  return final(self.ctx, text, finish, model)
end)
M.start, M.chunk, M.finish, M.error_event = writer.start, writer.chunk, writer.finish, writer.error_event

return M

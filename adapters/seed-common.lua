-- seed-common -- what the seed endpoints' adapters share (require
-- "adapters.seed-common"): input
-- checks, the usage/cost/timing fields of their answers, and an SSE stream
-- writer (see docs/configuration.md, "Route adapters").
--
-- Stream format written by `stream_writer`:
--
--   data: {"delta":"..."}                  one per piece of text
--   data: {<the route's final object>}      usage, cost and timing included
--   data: [DONE]
--
-- and, when the provider fails once the stream has started,
--
--   data: {"error":{"message":"...","type":"..."}}
--
-- with nothing after it.

local aigw = require "aigw"
local json = require "aigw.json"

local type, tostring, floor = type, tostring, math.floor
local concat = table.concat

local M = {}

-- The model used when a request names none: AIGW_SEED_DEFAULT_MODEL, else
-- the built-in echo model (no provider needed).
function M.default_model()
  local m = os.getenv("AIGW_SEED_DEFAULT_MODEL")
  if m and m ~= "" then return m end
  return "echo"
end

---------------------------------------------------------------------------
-- input checks: each returns the value, or nil and a message naming the field

function M.required_string(body, field)
  local v = body[field]
  if v == nil or v == json.null then return nil, "'" .. field .. "' is required" end
  if type(v) ~= "string" then return nil, "'" .. field .. "' must be a string" end
  if not v:find("%S") then return nil, "'" .. field .. "' must not be empty" end
  return v
end

-- An optional value: absent and JSON null both mean "not given" (true, nil).
local function given(v) return v ~= nil and v ~= json.null end
M.given = given

function M.optional_string(body, field)
  local v = body[field]
  if not given(v) then return true, nil end
  if type(v) ~= "string" or not v:find("%S") then
    return nil, "'" .. field .. "' must be a non-empty string"
  end
  return true, v
end

function M.optional_boolean(body, field)
  local v = body[field]
  if not given(v) then return true, nil end
  if type(v) ~= "boolean" then return nil, "'" .. field .. "' must be a boolean" end
  return true, v
end

function M.optional_positive_integer(body, field)
  local v = body[field]
  if not given(v) then return true, nil end
  if type(v) ~= "number" or v ~= v or v < 1 or v ~= floor(v) or v == math.huge then
    return nil, "'" .. field .. "' must be a positive integer"
  end
  return true, v
end

-- lo_open: the lower bound itself is excluded.
function M.optional_number_in(body, field, lo, hi, lo_open)
  local v = body[field]
  if not given(v) then return true, nil end
  local range = (lo_open and "(" or "[") .. lo .. ", " .. hi .. "]"
  if type(v) ~= "number" or v ~= v then
    return nil, "'" .. field .. "' must be a number in " .. range
  end
  if v > hi or v < lo or (lo_open and v == lo) then
    return nil, "'" .. field .. "' must be in " .. range
  end
  return true, v
end

---------------------------------------------------------------------------
-- answer fields

-- OpenAI's three counts from ctx.usage (null when the provider reported none).
function M.usage(ctx)
  local u = ctx.usage
  if type(u) ~= "table" then return json.null end
  return { prompt_tokens = u.prompt_tokens or 0, completion_tokens = u.completion_tokens or 0,
           total_tokens = u.total_tokens or (u.prompt_tokens or 0) + (u.completion_tokens or 0) }
end

-- USD, or null for a model with no price.
function M.cost(ctx)
  return type(ctx.cost) == "number" and ctx.cost or json.null
end

-- Milliseconds since the gateway began reading the request. start_time()
-- is on the worker loop's monotonic clock, so it is compared with
-- aigw.monotonic(), not with the wall clock.
function M.processing_time_ms()
  local ms = (aigw.monotonic() - aigw.request.start_time()) * 1000
  if ms < 0 then ms = 0 end
  return floor(ms + 0.5)
end

-- The text, finish reason and model of a chat.completion.
function M.answer_text(hub)
  local choice = type(hub) == "table" and type(hub.choices) == "table" and hub.choices[1]
  local text, finish
  if type(choice) == "table" then
    local msg = choice.message
    if type(msg) == "table" and type(msg.content) == "string" then text = msg.content end
    if type(choice.finish_reason) == "string" then finish = choice.finish_reason end
  end
  local model = type(hub) == "table" and type(hub.model) == "string" and hub.model or nil
  return text or "", finish, model
end

---------------------------------------------------------------------------
-- the stream writer

-- nil and why for what JSON cannot hold (a provider's 1e400 is inf): the
-- reply then ends the stream with the error event.
local function event(obj)
  local s, err = json.encode(obj)
  if not s then return nil, err end
  return "data: " .. s .. "\n\n"
end

-- The whole text is kept for the final event: no more than this of it (a
-- provider that streams without end would otherwise grow one request's
-- memory without end). Past it the stream ends with the error event.
local TEXT_MAX = 8 * 1024 * 1024

-- final(self, text, finish_reason, model) -> the last object of the stream,
-- called once the provider's stream has ended (ctx.usage and ctx.cost set).
function M.stream_writer(final)
  return {
    start = function(self)
      self.seed_parts, self.seed_finish, self.seed_model, self.seed_bytes = {}, nil, nil, 0
    end,
    chunk = function(self, c)
      if type(c.model) == "string" and c.model ~= "" then self.seed_model = c.model end
      local choices = c.choices
      if type(choices) ~= "table" then return nil end
      local out
      for _, ch in ipairs(choices) do
        if type(ch) == "table" then
          if type(ch.finish_reason) == "string" then self.seed_finish = ch.finish_reason end
          local d = ch.delta
          local piece = type(d) == "table" and d.content
          if type(piece) == "string" and piece ~= "" then
            local parts = self.seed_parts
            self.seed_bytes = (self.seed_bytes or 0) + #piece
            if self.seed_bytes > TEXT_MAX then
              return nil, "the answer is longer than " .. TEXT_MAX .. " bytes"
            end
            parts[#parts + 1] = piece
            local e, err = event({ delta = piece })
            if not e then return nil, err end
            out = (out or "") .. e
          end
        end
      end
      return out
    end,
    finish = function(self)
      local obj = final(self, concat(self.seed_parts or {}), self.seed_finish, self.seed_model or self.model)
      local e, err = event(obj)
      if not e then return nil, err end
      return e .. "data: [DONE]\n\n"
    end,
    error_event = function(_, message, etype)
      return event({ error = { message = tostring(message), type = tostring(etype or "server_error") } })
    end,
  }
end

return M

-- aigw.engine.protocols.openai -- OpenAI Chat Completions, the hub format: every
-- other wire format is translated to and from it. Its own to/from-hub
-- functions are identities (the gateway does not call them); it also holds
-- what the other modules share: the hub chunk builders, the text of a
-- content value, the retry delay of an error's details. The contract is in
-- aigw.engine.protocols.
--
-- It serves the other OpenAI-format endpoints (completions, embeddings,
-- responses) too: their paths, errors and usage are the same.

local json = require "aigw.json"

local type, ipairs, tostring, tonumber = type, ipairs, tostring, tonumber
local concat = table.concat
local ceil, max = math.ceil, math.max
local encode, decode = json.encode, json.decode
local null, empty_array = json.null, json.empty_array

local M = {}

M.name = "openai"
M.hub = true

---------------------------------------------------------------------------
-- hub helpers

-- The text of an OpenAI message content: a string, or the text parts of a
-- list of parts joined (other part types ignored).
function M.text(content)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return "" end
  local out = {}
  for _, p in ipairs(content) do
    if type(p) == "table" and p.type == "text" and type(p.text) == "string" then
      out[#out + 1] = p.text
    end
  end
  return concat(out)
end

-- A stream chunk of choice `index` for a stream translator s (its id,
-- created, model, and include_usage: then "usage": null, as OpenAI's
-- chunks carry when usage was asked for).
function M.chunk(s, index, delta, finish)
  local c = {
    id = s.id, object = "chat.completion.chunk", created = s.created, model = s.model,
    choices = { { index = index, delta = delta, finish_reason = finish or null, logprobs = null } },
  }
  if s.include_usage then c.usage = null end
  return c
end

-- The usage chunk that ends a stream with include_usage: no choices.
function M.usage_chunk(s, usage)
  return {
    id = s.id, object = "chat.completion.chunk", created = s.created, model = s.model,
    choices = empty_array, usage = usage,
  }
end

-- The retry delay in an error's details (Google's RetryInfo, "28.4s"), in
-- whole seconds rounded up (at least 1), or nil.
function M.retry_delay(details)
  if type(details) ~= "table" then return nil end
  for _, det in ipairs(details) do
    local rd = type(det) == "table" and det.retryDelay
    local n = type(rd) == "string" and tonumber(rd:match("^%s*([%d.]+)s%s*$"))
    if n then return max(1, ceil(n)) end
  end
  return nil
end

---------------------------------------------------------------------------
-- requests and whole answers: the hub's are identities

function M.request_to_hub(req) return req end

-- The request as sent: a stream asks for its usage chunk (so that tokens
-- are counted even when the client did not ask).
function M.request_from_hub(req)
  if req.stream == true then
    req.stream_options = type(req.stream_options) == "table" and req.stream_options or {}
    req.stream_options.include_usage = true
  end
  return req
end

function M.response_to_hub(resp)
  if type(resp.choices) ~= "table" then
    return nil, { status = 502, message = "the provider's answer has no choices", type = "api_error" }
  end
  return resp
end

function M.response_from_hub(resp) return resp end

---------------------------------------------------------------------------
-- usage

local function num(v)
  if type(v) == "number" then return v end
  return nil
end

-- Chat Completions usage, or the Responses API's (input/output names) ->
-- normalised usage (see aigw.usage).
function M.usage(u)
  if u == nil then return nil end
  local prompt = num(u.prompt_tokens) or num(u.input_tokens) or 0
  local completion = num(u.completion_tokens) or num(u.output_tokens) or 0
  local r = {
    prompt_tokens = prompt,
    completion_tokens = completion,
    total_tokens = num(u.total_tokens) or prompt + completion,
  }
  local pd = u.prompt_tokens_details
  if type(pd) ~= "table" then pd = u.input_tokens_details end
  if type(pd) == "table" then r.cached_tokens = num(pd.cached_tokens) end
  local cd = u.completion_tokens_details
  if type(cd) ~= "table" then cd = u.output_tokens_details end
  if type(cd) == "table" then r.reasoning_tokens = num(cd.reasoning_tokens) end
  return r
end

function M.answer_usage(resp)
  return M.usage(type(resp.usage) == "table" and resp.usage or nil)
end

-- The usage object one decoded stream event carries (in one chunk, with
-- stream_options.include_usage, normally the last before [DONE]; the
-- others carry "usage": null). Each replaces the one before.
function M.stream_usage(ev)
  return ev.usage
end

-- The stream event an accumulator takes for a usage object u.
function M.usage_event(u)
  return { usage = u }
end

-- A whole answer's usage object from the counts the core read out of it
-- (count(name): the number, or nil).
function M.counted_usage(count)
  local u = { prompt_tokens = count("prompt_tokens"), completion_tokens = count("completion_tokens"),
              total_tokens = count("total_tokens"), input_tokens = count("input_tokens"),
              output_tokens = count("output_tokens") }
  local cached, reasoning = count("cached_tokens"), count("reasoning_tokens")
  if cached then u.prompt_tokens_details = { cached_tokens = cached } end
  if reasoning then u.completion_tokens_details = { reasoning_tokens = reasoning } end
  return u
end

---------------------------------------------------------------------------
-- streams

-- A reader of the hub's own chunks (they are hub chunks already).
local Identity = {}
Identity.__index = Identity
function Identity:event(_, data)
  if type(data) == "table" and type(data.usage) == "table" then self.u = data.usage end
  return { data }
end
function Identity:finish() return {} end
function Identity:usage() return self.u end

function M.stream_to_hub()
  return setmetatable({}, Identity)
end

-- The reader as the reply runs it. The gateway's own chunks (the usage
-- chunk it asked for) go on to the writer, which keeps them from a client
-- that did not ask.
local function read_event(x, ev)
  local d = ev.data
  if d == "[DONE]" then return {} end
  local c = decode(d)
  if type(c) ~= "table" then return {} end
  if type(c.error) == "table" then
    return nil, tostring(c.error.message or "upstream stream error"), c.error.type
  end
  if type(c.usage) == "table" then x.acc:event(c) end
  return { c }
end

M.reader = {
  event = read_event,
  finish = function() return {} end,
}

-- Each writer function returns the text, and a message when something
-- could not be written: a provider's number past a double's range decodes
-- to inf, which JSON cannot hold, and the stream fails there instead of
-- raising.
local UNWRITABLE = "a value the gateway cannot write (a number out of range)"
M.UNWRITABLE = UNWRITABLE

-- OpenAI's in-stream error (the SDKs raise on a data event with "error").
local function error_event(_, message, etype, code)
  return "data: " .. encode({ error = { message = message, type = etype or "server_error",
                                        code = code or null, param = null } }) .. "\n\n"
end

M.writer = {
  start = function() return nil end,
  chunk = function(x, c)
    -- The usage chunk the client did not ask for stays with the gateway.
    if not x.include_usage and type(c.usage) == "table" and type(c.choices) == "table"
       and c.choices[1] == nil then
      return nil
    end
    local j = encode(c)
    if not j then return nil, UNWRITABLE end
    return "data: " .. j .. "\n\n"
  end,
  finish = function() return "data: [DONE]\n\n" end,
  error_event = error_event,
}

---------------------------------------------------------------------------
-- errors

-- An error body -> { status, message, type, code, retry_after }. Lenient:
-- OpenAI's and Azure's {"error":{message,type,code,param}}, and any body
-- with an error object or a top-level message (Anthropic's, Gemini's, a
-- one-element array of one), so that it reads what OpenAI-compatible
-- servers send. message is nil when the body has none; code is the
-- provider's code, else its type or status name.
function M.error_parse(status, d)
  if type(d) == "table" and d.error == nil and type(d[1]) == "table" then d = d[1] end
  local e = type(d) == "table" and (type(d.error) == "table" and d.error or d) or {}
  return {
    status = status,
    message = type(e.message) == "string" and e.message or nil,
    type = type(e.type) == "string" and e.type or nil,
    code = (type(e.code) == "string" and e.code) or (type(e.type) == "string" and e.type)
           or (type(e.status) == "string" and e.status) or nil,
    retry_after = M.retry_delay(e.details),
  }
end

-- err ({ message, type, code }) -> OpenAI's envelope.
function M.error_format(status, err)
  return { error = {
    message = err.message or ("upstream error" .. (status and (" " .. status) or "")),
    type = err.type or "server_error",
    code = err.code or null,
    param = null,
  } }
end

---------------------------------------------------------------------------
-- paths: the endpoint's name under the base URL (which holds the version),
-- built once per endpoint. Called as provider:path(endpoint, model, stream).

local paths = setmetatable({}, { __index = function(t, endpoint)
  local p = "/" .. endpoint
  t[endpoint] = p
  return p
end })

function M.path(_, endpoint)
  return paths[endpoint]
end

return M

-- aigw.usage: token usage from each provider's own usage object, usage
-- accumulated over a stream, and its cost in USD.
--
-- Normalised usage (OpenAI's meaning of each count):
--   prompt_tokens      every input token, cached ones included
--   completion_tokens  every output token, reasoning ("thinking") ones included
--   total_tokens       as the provider reported it, else the sum of the two
--   cached_tokens      input tokens read from a prompt cache (absent when not reported)
--   cache_creation_tokens  input tokens written to a prompt cache (Anthropic only)
--   reasoning_tokens   output tokens spent on reasoning (absent when not reported)

local protocols = require "aigw.engine.protocols"

local type, error, pairs = type, error, pairs
local sub, byte = string.sub, string.byte

local _M = {}

local function num(v)
  if type(v) == "number" then return v end
  return nil
end

local function argcheck(fname, n, v, want, optional)
  local t = type(v)
  if t ~= want and not (optional and v == nil) then
    error("bad argument #" .. n .. " to '" .. fname .. "' (" .. want .. " expected, got " .. t .. ")", 3)
  end
end

-- Each wire format reads its own usage object (aigw.engine.protocols.<name>.usage).

--- OpenAI Chat Completions / Responses usage.
function _M.from_openai(u)
  argcheck("from_openai", 1, u, "table", true)
  return protocols.openai.usage(u)
end

--- Anthropic Messages usage: prompt_tokens counts the cache reads and
--- writes too (Anthropic's input_tokens leaves them out).
function _M.from_anthropic(u)
  argcheck("from_anthropic", 1, u, "table", true)
  return protocols.anthropic.usage(u)
end

--- Gemini usageMetadata: completion_tokens counts the thinking tokens too.
function _M.from_gemini(m)
  argcheck("from_gemini", 1, m, "table", true)
  return protocols.gemini.usage(m)
end

-- Stream accumulators ------------------------------------------------------

local Stream = {}
Stream.__index = Stream

-- A provider's usage object has a handful of counts: a stream whose events
-- name more than this many is not allowed to grow the accumulator further.
local FIELDS_MAX = 64

-- The counts aigw reads are always taken, whatever else an event names.
local KNOWN = { input_tokens = true, output_tokens = true, cache_creation_input_tokens = true,
                cache_read_input_tokens = true }

-- Returns how many fields dst has now (n before).
local function copy_numbers(dst, src, n)
  for k, v in pairs(src) do
    if type(v) == "number" and type(k) == "string" then
      if dst[k] == nil and not KNOWN[k] then
        if n >= FIELDS_MAX then goto next end
        n = n + 1
      end
      dst[k] = v
    end
    ::next::
  end
  return n
end

--- Feed one decoded event (the JSON of an SSE event's data, as a table).
--- Strings are decoded first; "[DONE]" and text that is not JSON are ignored.
function Stream:event(ev)
  if type(ev) == "string" then
    if ev == "[DONE]" then return end
    ev = require("aigw.json").decode(ev)
    if type(ev) ~= "table" then return end
  elseif type(ev) ~= "table" then
    error("bad argument #1 to 'event' (table or string expected, got " .. type(ev) .. ")", 2)
  end
  -- The format's reader: the usage object the event carries, and whether
  -- its counts merge into the stream's (Anthropic's) or replace them.
  local u, merge = self.p.stream_usage(ev)
  if type(u) ~= "table" then return end
  if not merge then
    self._raw = u
    return
  end
  local raw = self._raw
  if not raw then raw = {}; self._raw = raw end
  self._nraw = copy_numbers(raw, u, self._nraw or 0)
end

--- Normalised usage seen so far, or nil when the stream carried none.
function Stream:result()
  local raw = self._raw
  if not raw then return nil end
  return self.p.usage(raw)
end

--- The provider's own usage object as last seen (for Anthropic, the fields of
--- message_start's usage updated by message_delta's), or nil.
function Stream:raw()
  return self._raw
end

function _M.stream(kind)
  argcheck("stream", 1, kind, "string")
  local p = protocols[kind]
  if not p then
    error("bad argument #1 to 'stream' (\"openai\", \"anthropic\" or \"gemini\" expected, got \"" ..
          kind .. "\")", 2)
  end
  return setmetatable({ kind = kind, p = p, _raw = nil }, Stream)
end

-- The same for a protocol module p (aigw.engine.reply, which has it already).
function _M.accumulator(p)
  return setmetatable({ kind = p.name, p = p, _raw = nil }, Stream)
end

-- Prices -------------------------------------------------------------------

-- USD per million tokens: input, output, cached_input (prompt-cache reads,
-- where it differs from input) and cache_write (Anthropic prompt-cache
-- writes, 5-minute TTL).
--
-- PRICES CHANGE. These are the providers' published list prices for
-- standard (not batch, not priority) requests at the time of writing, for
-- Gemini the tier for prompts of up to 200k tokens. They are a default,
-- not a source of truth: pass `overrides` to usage.cost, or assign
-- entries of usage.prices (e.g. from the gateway's config in init).
_M.prices = {
  -- OpenAI
  ["gpt-5"]               = { input = 1.25,  output = 10.00, cached_input = 0.125 },
  ["gpt-5-mini"]          = { input = 0.25,  output = 2.00,  cached_input = 0.025 },
  ["gpt-5-nano"]          = { input = 0.05,  output = 0.40,  cached_input = 0.005 },
  ["gpt-4.1"]             = { input = 2.00,  output = 8.00,  cached_input = 0.50 },
  ["gpt-4.1-mini"]        = { input = 0.40,  output = 1.60,  cached_input = 0.10 },
  ["gpt-4.1-nano"]        = { input = 0.10,  output = 0.40,  cached_input = 0.025 },
  ["gpt-4o"]              = { input = 2.50,  output = 10.00, cached_input = 1.25 },
  ["gpt-4o-mini"]         = { input = 0.15,  output = 0.60,  cached_input = 0.075 },
  ["gpt-4-turbo"]         = { input = 10.00, output = 30.00 },
  ["gpt-3.5-turbo"]       = { input = 0.50,  output = 1.50 },
  ["o1"]                  = { input = 15.00, output = 60.00, cached_input = 7.50 },
  ["o1-mini"]             = { input = 1.10,  output = 4.40,  cached_input = 0.55 },
  ["o3"]                  = { input = 2.00,  output = 8.00,  cached_input = 0.50 },
  ["o3-pro"]              = { input = 20.00, output = 80.00 },
  ["o3-mini"]             = { input = 1.10,  output = 4.40,  cached_input = 0.55 },
  ["o4-mini"]             = { input = 1.10,  output = 4.40,  cached_input = 0.275 },
  ["text-embedding-3-small"] = { input = 0.02, output = 0 },
  ["text-embedding-3-large"] = { input = 0.13, output = 0 },
  ["text-embedding-ada-002"] = { input = 0.10, output = 0 },

  -- Anthropic (cache reads 0.1x input, cache writes 1.25x input)
  ["claude-opus-4-1"]     = { input = 15.00, output = 75.00, cached_input = 1.50, cache_write = 18.75 },
  ["claude-opus-4"]       = { input = 15.00, output = 75.00, cached_input = 1.50, cache_write = 18.75 },
  ["claude-sonnet-4-5"]   = { input = 3.00,  output = 15.00, cached_input = 0.30, cache_write = 3.75 },
  ["claude-sonnet-4"]     = { input = 3.00,  output = 15.00, cached_input = 0.30, cache_write = 3.75 },
  ["claude-3-7-sonnet"]   = { input = 3.00,  output = 15.00, cached_input = 0.30, cache_write = 3.75 },
  ["claude-3-5-sonnet"]   = { input = 3.00,  output = 15.00, cached_input = 0.30, cache_write = 3.75 },
  ["claude-haiku-4-5"]    = { input = 1.00,  output = 5.00,  cached_input = 0.10, cache_write = 1.25 },
  ["claude-3-5-haiku"]    = { input = 0.80,  output = 4.00,  cached_input = 0.08, cache_write = 1.00 },
  ["claude-3-haiku"]      = { input = 0.25,  output = 1.25,  cached_input = 0.03, cache_write = 0.30 },
  ["claude-3-opus"]       = { input = 15.00, output = 75.00, cached_input = 1.50, cache_write = 18.75 },

  -- Gemini (prompts up to 200k tokens; thinking tokens are billed as output)
  ["gemini-2.5-pro"]        = { input = 1.25,  output = 10.00, cached_input = 0.31 },
  ["gemini-2.5-flash"]      = { input = 0.30,  output = 2.50,  cached_input = 0.075 },
  ["gemini-2.5-flash-lite"] = { input = 0.10,  output = 0.40,  cached_input = 0.025 },
  ["gemini-2.0-flash"]      = { input = 0.10,  output = 0.40,  cached_input = 0.025 },
  ["gemini-2.0-flash-lite"] = { input = 0.075, output = 0.30 },
  ["gemini-1.5-pro"]        = { input = 1.25,  output = 5.00,  cached_input = 0.3125 },
  ["gemini-1.5-flash"]      = { input = 0.075, output = 0.30,  cached_input = 0.01875 },
}

-- The longest key naming `model` in overrides or the table: the same
-- name, or a prefix followed by "-" or "@" (dated snapshots
-- "gpt-4o-2024-08-06", aliases "claude-3-5-haiku-latest", Vertex's
-- "claude-3-5-sonnet@20240620"). Those prefixes are the model cut before
-- one of its "-" or "@", so they are tried longest first, a hash look-up
-- each (this runs for every answer's cost); on equal keys the override's.
-- Only prefixes of up to PREFIX_MAX bytes are tried (price names are far
-- shorter): each candidate is a new string, so trying every one of a
-- client's long name would cost the square of its length.
local PREFIX_MAX = 64

local function longest(model, overrides)
  local prices = _M.prices
  local last = #model
  if last > PREFIX_MAX + 1 then last = PREFIX_MAX + 1 end
  for i = last, 2, -1 do
    local c = byte(model, i)
    if c == 45 or c == 64 then
      local key = sub(model, 1, i - 1)
      local p = overrides and overrides[key] or prices[key]
      if p then return p, key end
    end
  end
  return nil
end

--- The price entry for `model` and the key it was found under, or nil.
function _M.price(model, overrides)
  argcheck("price", 1, model, "string")
  argcheck("price", 2, overrides, "table", true)
  local p = overrides and overrides[model]
  if p then return p, model end
  p = _M.prices[model]
  if p then return p, model end
  -- an explicit "provider/model": price the model part
  for i = #model, 1, -1 do
    if byte(model, i) == 47 then
      local bare = sub(model, i + 1)
      p = overrides and overrides[bare] or _M.prices[bare]
      if p then return p, bare end
      model = bare
      break
    end
  end
  return longest(model, overrides)
end

--- Cost in USD of normalised usage `u` on `model`, or nil when the model
--- has no price.
function _M.cost(model, u, overrides)
  argcheck("cost", 1, model, "string")
  argcheck("cost", 2, u, "table")
  argcheck("cost", 3, overrides, "table", true)
  local p = _M.price(model, overrides)
  if not p then return nil end
  local input, output = p.input or 0, p.output or 0
  local prompt = num(u.prompt_tokens) or 0
  local cached = num(u.cached_tokens) or 0
  local created = num(u.cache_creation_tokens) or 0
  local plain = prompt - cached - created
  if plain < 0 then plain = 0 end
  local usd = plain * input
            + cached * (p.cached_input or input)
            + created * (p.cache_write or input)
            + (num(u.completion_tokens) or 0) * output
  return usd / 1e6
end

return _M

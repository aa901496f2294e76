-- aigw.exchange -- the way back of one LLM request: a provider's answer
-- turned into the client's format as it arrives, and its token usage.
--
-- The runtime makes one per request that reaches a provider and hands it
-- the response through the internal filters, before any plugin's:
--
--   local x = exchange.new(ctx, { client = "anthropic", upstream = "openai",
--                                 stream = true, model = "gpt-4o-mini",
--                                 include_usage = false, injected_usage = true })
--   status, head = x:head(status, head)       -- header_filter
--   out = x:body(chunk, eof, err)             -- body_filter
--   x:finish()                                -- sets ctx.usage and ctx.cost
--
-- Formats: "openai" (Chat Completions, the hub every translation goes
-- through), "anthropic" (Messages), "gemini" (generateContent) upstream;
-- "openai", "anthropic" or a route adapter (a table with chunk/finish/
-- error_event functions) on the client's side.
--
-- Same format on both sides: the bytes pass as they came (the body filter
-- only watches for usage), except the usage chunk the gateway asked an
-- OpenAI stream for on the client's behalf, which is left out. Different
-- formats: each SSE event is decoded, translated and written at once; no
-- event waits for a later one. Non-stream translated answers do not come
-- here: the runtime fetches and translates them whole.
--
-- An upstream error status (>= 400) is passed on untouched (the
-- error-mapping plugin reshapes it). A stream that fails once started
-- (upstream gone, timed out, or an error event from the provider) ends
-- with an error event in the client's format.

local json = require "aigw.json"
local sse = require "aigw.sse"
local usage_mod = require "aigw.usage"
local anthropic = require "aigw.translate.anthropic"
local gemini = require "aigw.translate.gemini"

local type, setmetatable, tostring, ipairs = type, setmetatable, tostring, ipairs
local find, sub, byte = string.find, string.sub, string.byte
local concat = table.concat
local encode, decode = json.encode, json.decode

local M = {}

local X = {}
X.__index = X

---------------------------------------------------------------------------
-- client-side writers: hub (OpenAI) chunks -> the client's wire text

local function openai_chunk(self, c)
  -- The usage chunk the client did not ask for stays with the gateway.
  if not self.include_usage and type(c.usage) == "table" and type(c.choices) == "table"
     and c.choices[1] == nil then
    return nil
  end
  return "data: " .. encode(c) .. "\n\n"
end

local function anthropic_events(list)
  local out = {}
  for i, ev in ipairs(list) do
    out[i] = "event: " .. ev[1] .. "\ndata: " .. encode(ev[2]) .. "\n\n"
  end
  return concat(out)
end

-- OpenAI's in-stream error (the SDKs raise on a data event with "error").
local function openai_error_event(message, etype, code)
  return "data: " .. encode({ error = { message = message, type = etype or "server_error",
                                        code = code or json.null, param = json.null } }) .. "\n\n"
end

local function anthropic_error_event(message, etype)
  return "event: error\ndata: " .. encode({ type = "error",
    error = { type = etype or "api_error", message = message } }) .. "\n\n"
end

local CLIENT = {
  openai = {
    start = function() return nil end,
    chunk = openai_chunk,
    finish = function() return "data: [DONE]\n\n" end,
    error_event = function(_, message, etype, code) return openai_error_event(message, etype, code) end,
  },
  anthropic = {
    start = function(self) self.to = anthropic.stream_to_anthropic(self.model) end,
    chunk = function(self, c) return anthropic_events(self.to:chunk(c)) end,
    finish = function(self) return anthropic_events(self.to:finish()) end,
    error_event = function(_, message, etype)
      -- OpenAI error types name Anthropic's closely enough; servers' own
      -- failures are api_error.
      local t = (etype == "rate_limit_error" or etype == "overloaded_error"
                 or etype == "invalid_request_error") and etype or "api_error"
      return anthropic_error_event(message, t)
    end,
  },
}
M.CLIENT = CLIENT

---------------------------------------------------------------------------
-- upstream-side readers: one SSE event -> hub chunks (or an error)

-- Each returns a list of hub chunks, or nil, message, type when the event
-- is the provider's report of a failure.
local UPSTREAM = {
  openai = function(self, ev)
    local d = ev.data
    if d == "[DONE]" then return {} end
    local c = decode(d)
    if type(c) ~= "table" then return {} end
    if type(c.error) == "table" then
      return nil, tostring(c.error.message or "upstream stream error"), c.error.type
    end
    if type(c.usage) == "table" then self.acc:event(c) end
    return { c }
  end,
  anthropic = function(self, ev)
    local d = decode(ev.data)
    if type(d) ~= "table" then return {} end
    local name = ev.event or d.type
    if name == "error" then
      local e = type(d.error) == "table" and d.error or {}
      return nil, tostring(e.message or "upstream stream error"), e.type
    end
    if name == "message_start" or name == "message_delta" then self.acc:event(d) end
    return self.from:event(name, d)
  end,
  gemini = function(self, ev)
    local d = decode(ev.data)
    if type(d) ~= "table" then return {} end
    if type(d.usageMetadata) == "table" then self.acc:event(d) end
    local chunks, err = self.from:event(d)
    if err then return nil, err.message, err.type end
    return chunks
  end,
}

local UPSTREAM_FINISH = {
  openai = function() return {} end,
  anthropic = function() return {} end,
  gemini = function(self) return self.from:finish() end,
}

---------------------------------------------------------------------------

-- opts: client, upstream, stream, model (the upstream's model name),
-- include_usage (the client asked for a usage chunk), injected_usage (the
-- gateway asked the provider for it), prices (config overrides).
function M.new(ctx, o)
  local self = setmetatable({
    ctx = ctx, client = o.client, upstream = o.upstream, stream = o.stream and true or false,
    model = o.model, include_usage = o.include_usage and true or false,
    injected_usage = o.injected_usage and true or false, prices = o.prices,
    same = o.client == o.upstream, failed = false, ended = false, done = false,
    acc = usage_mod.stream(o.upstream),
  }, X)
  if self.stream and not (self.same and self.upstream == "openai") then self.parser = sse.parser() end
  ctx.exchange = self
  return self
end

function X:writer()
  local c = self.client
  return type(c) == "table" and c or CLIENT[c]
end

-- The response head: an error status turns translation off; a translated
-- stream says what it is.
function X:head(status, head)
  self.status = status
  if status >= 400 then
    self.error_status = true
    return status, head
  end
  if not self.stream then return status, head end
  local ct = find("\n" .. head:lower(), "\ncontent%-type:[ \t]*text/event%-stream")
  if not ct then
    -- Asked for a stream, answered with something else: passed on as it
    -- is (its usage read like a whole answer's when the formats match).
    self.stream, self.raw = false, not self.same
    return status, head
  end
  if not self.same then
    -- The usage chunk (and "usage": null in every chunk) only for a client
    -- that asked for it, or that needs it (Anthropic's message_delta).
    local up, opts = self.upstream, { include_usage = self.include_usage or self.client ~= "openai" }
    if up == "anthropic" then
      self.from = anthropic.stream_from_anthropic(self.model, opts)
    elseif up == "gemini" then
      self.from = gemini.stream_from_gemini(self.model, opts)
    end
    local w = self:writer()
    if w.start then w.start(self) end
  end
  return status, head
end

-- The complete events of an OpenAI stream so far, as raw text (the bytes
-- exactly as they came, comments included), each ending in its blank line;
-- an unfinished one waits for the next piece.
-- Where the blank line that ends an event ends (after \n\n, \r\n\n,
-- \n\r\n or \r\n\r\n), searching from at; nil when there is none yet.
-- Plain finds and byte tests, not the pattern "\r?\n\r?\n": Lua's
-- matcher tries that at every byte, and this runs on every event.
local function event_end(buf, at)
  while true do
    local n = find(buf, "\n", at, true)
    if not n then return nil end
    local c = byte(buf, n + 1)
    if c == 10 then return n + 1 end
    if c == 13 and byte(buf, n + 2) == 10 then return n + 2 end
    at = n + 1
  end
end

-- Whether an event has a "usage" member that is an object (not null):
-- plain finds, each candidate checked with an anchored pattern.
local function has_usage_object(ev)
  local u = find(ev, '"usage"', 1, true)
  while u do
    if find(ev, "^%s*:%s*{", u + 7) then return true end
    u = find(ev, '"usage"', u + 7, true)
  end
  return false
end

local function raw_events(self, chunk)
  local buf = self.rest and (self.rest .. chunk) or chunk
  local out, at = {}, 1
  while true do
    local e = event_end(buf, at)
    if not e then break end
    out[#out + 1] = sub(buf, at, e)
    at = e + 1
  end
  self.rest = at <= #buf and sub(buf, at) or nil
  return out
end

-- The JSON text of an event's data lines (one line in practice).
local function event_data(ev)
  local d = ev:match("^data: ?(.-)\r?\n\r?\n$") or ev:match("\ndata: ?(.-)\r?\n")
  return d
end

-- Pass-through body: the bytes go on (watched, or with the usage chunk the
-- gateway asked for on the client's behalf left out); usage is read on the
-- way.
function X:pass(chunk, eof)
  if not self.stream then
    -- One JSON document: kept until its end, where the usage object is
    -- read. Usage comes last: past 1 MB only the last 64 KB are kept.
    local parts = self.parts
    if not parts then parts, self.kept = {}, 0; self.parts = parts end
    if chunk ~= "" then
      parts[#parts + 1] = chunk
      self.kept = self.kept + #chunk
      if self.kept > 1048576 then
        parts = { sub(concat(parts), -65536) }
        self.parts, self.kept = parts, 65536
      end
    end
    if eof then
      self:read_usage(concat(parts))
      self:finish(true)
    end
    return chunk
  end
  if self.upstream == "anthropic" then
    for _, ev in ipairs(self.parser:feed(chunk)) do
      local name = ev.event
      if name == "message_start" or name == "message_delta" then self.acc:event(ev.data) end
    end
    if eof then self:finish(true) end
    return chunk
  end
  local rewrite = self.injected_usage
  local out = rewrite and {} or nil
  for _, ev in ipairs(raw_events(self, chunk)) do
    local keep = true
    if has_usage_object(ev) then
      local c = decode(event_data(ev) or "")
      if type(c) == "table" then
        self.acc:event(c)
        -- the Responses API's stream: usage in response.completed's response
        local r = c.response
        if c.usage == nil and type(r) == "table" and type(r.usage) == "table" then
          self.acc:event({ usage = r.usage })
        end
        keep = not (type(c.choices) == "table" and c.choices[1] == nil)
      end
    end
    if rewrite and keep then
      -- and the "usage": null that asking adds to every other chunk, where
      -- the provider writes it last (OpenAI does)
      if find(ev, ',"usage":null}', 1, true) then ev = ev:gsub(',"usage":null}(\r?\n\r?\n)$', "}%1") end
      out[#out + 1] = ev
    end
  end
  if eof then
    if rewrite and self.rest then out[#out + 1] = self.rest end
    self.rest = nil
    self:finish(true)
  end
  if rewrite then return concat(out) end
  return chunk
end

-- Reads the top-level usage object of a whole JSON answer: the last
-- "usage" key of the text (providers write it last; a key of that name in
-- the content would be inside an escaped string or before it), decoded
-- alone, so the answer itself is never decoded. Plain searches only: this
-- runs on every answer that passes through.
local cjson_decode = require("cjson.safe").decode

function X:read_usage(body)
  local at, last = 1, nil
  while true do
    local s = find(body, '"usage"', at, true)
    if not s then break end
    last, at = s, s + 7
  end
  if not last then return end
  -- Byte loops (which LuaJIT compiles) rather than patterns (which it
  -- does not): ':' and '{' after the key, then the object's end, braces
  -- counted and strings skipped.
  local n, i = #body, last + 7
  local c = byte(body, i)
  while c == 32 or c == 9 or c == 10 or c == 13 do i = i + 1; c = byte(body, i) end
  if c ~= 58 then return end
  i = i + 1
  c = byte(body, i)
  while c == 32 or c == 9 or c == 10 or c == 13 do i = i + 1; c = byte(body, i) end
  if c ~= 123 then return end
  local open, depth, instr = i, 0, false
  while i <= n do
    c = byte(body, i)
    if instr then
      if c == 92 then i = i + 1 elseif c == 34 then instr = false end
    elseif c == 34 then
      instr = true
    elseif c == 123 then
      depth = depth + 1
    elseif c == 125 then
      depth = depth - 1
      if depth == 0 then
        local u = cjson_decode(sub(body, open, i))
        if type(u) == "table" then
          if self.upstream == "anthropic" then self.acc:event({ type = "message_delta", usage = u })
          else self.acc:event({ usage = u }) end
        end
        return
      end
    end
    i = i + 1
  end
end

-- The end of a whole answer the core followed itself: its top-level
-- "usage" member ("" when it had none). Its counts are read by the core
-- (aigw_json_numbers), with no table made for the JSON.
local ffi = require "ffi"
require "aigw.ffi_defs"
local COUNTS = { "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens",
                 "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                 "cached_tokens", "reasoning_tokens" }
local count_names = ffi.new("const char *[?]", #COUNTS, COUNTS)
local count_lens = ffi.new("size_t[?]", #COUNTS)
for i, k in ipairs(COUNTS) do count_lens[i - 1] = #k end
local counts = ffi.new("double[?]", #COUNTS)

local function count(i)
  local v = counts[i - 1]
  if v < 0 then return nil end
  return v
end

function X:tapped(text)
  if text ~= "" then
    for i = 0, #COUNTS - 1 do counts[i] = -1 end
    ffi.C.aigw_json_numbers(text, #text, count_names, count_lens, #COUNTS, counts)
    local u
    if self.upstream == "anthropic" then
      u = { input_tokens = count(4), output_tokens = count(5), cache_read_input_tokens = count(6),
            cache_creation_input_tokens = count(7) }
      self.acc:event({ type = "message_delta", usage = u })
    else
      u = { prompt_tokens = count(1), completion_tokens = count(2), total_tokens = count(3),
            input_tokens = count(4), output_tokens = count(5) }
      local cached, reasoning = count(8), count(9)
      if cached then u.prompt_tokens_details = { cached_tokens = cached } end
      if reasoning then u.completion_tokens_details = { reasoning_tokens = reasoning } end
      self.acc:event({ usage = u })
    end
  end
  self:finish(true)
end

-- The stream ends with the provider's failure (an error event, or the
-- upstream gone): the client's error event, and nothing after it.
function X:fail(message, etype)
  self.failed = true
  self.ended = true
  self:finish(false)
  return self:writer().error_event(self, message, etype)
end

-- Translated stream: every complete event is translated and written now.
function X:translate(chunk, eof, err)
  if self.ended then return "" end
  local out = {}
  local read, w = UPSTREAM[self.upstream], self:writer()
  for _, ev in ipairs(self.parser:feed(chunk)) do
    local chunks, msg, etype = read(self, ev)
    if not chunks then
      out[#out + 1] = self:fail(msg, etype)
      return concat(out)
    end
    for _, c in ipairs(chunks) do
      local s = w.chunk(self, c)
      if s then out[#out + 1] = s end
    end
  end
  if err then
    out[#out + 1] = self:fail("upstream stream failed: " .. err)
  elseif eof then
    for _, c in ipairs(UPSTREAM_FINISH[self.upstream](self)) do
      local s = w.chunk(self, c)
      if s then out[#out + 1] = s end
    end
    -- ctx.usage and ctx.cost first: a writer's last words may report them
    -- (a route adapter's final event does).
    self.ended = true
    self:finish(true)
    local s = w.finish(self)
    if s then out[#out + 1] = s end
  end
  return concat(out)
end

-- The head is seen first for translated streams and for pass-through
-- bodies that are rewritten; one that only watches may not see it.
function X:body(chunk, eof, err)
  if self.error_status or self.raw or not (self.same or self.status) then
    if eof then self:finish(true) end
    return chunk
  end
  if not self.same then return self:translate(chunk, eof, err) end
  if err then
    -- The error event follows complete events only; a half-written event
    -- is cut off (the client sees a broken stream, not a bad event).
    local p = self.parser
    local mid_event = self.rest or (p and (p._nparts > 0 or p._pending))
    if self.stream and not self.failed and not mid_event then
      return self:fail("upstream stream failed: " .. err)
    end
    self:finish(false)
    return ""
  end
  return self:pass(chunk, eof)
end

-- Usage for a whole (non-stream) answer the runtime translated itself.
function X:set_usage(u)
  self.usage = u
  self:finish(true)
end

-- ctx.usage (normalised, see aigw.usage) and ctx.cost (USD, when the model
-- has a price). complete false: the answer was cut short (upstream failed,
-- client gone): the counts reported so far, marked partial.
function X:finish(complete)
  if self.done then return end
  self.done = true
  local u = self.usage or self.acc:result()
  if not u then return end
  local ctx = self.ctx
  ctx.usage = u
  if not complete then u.partial = true end
  if self.model then ctx.cost = usage_mod.cost(self.model, u, self.prices) end
end

return M

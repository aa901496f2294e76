-- aigw.engine.reply -- the reply, the way back of one LLM request: a provider's answer
-- turned into the client's format as it arrives, and its token usage.
--
-- The runtime makes one per request that reaches a provider and hands it
-- the response through the internal filters, before any plugin's:
--
--   local x = reply.new(ctx, { client = "anthropic", upstream = "openai",
--                              stream = true, model = "gpt-4o-mini",
--                              include_usage = false, injected_usage = true })
--   status, head = x:head(status, head)       -- header_filter
--   out = x:body(chunk, eof, err)             -- body_filter
--   x:finish()                                -- sets ctx.usage and ctx.cost
--
-- Formats are named as in aigw.engine.protocols: "openai" (Chat Completions, the
-- hub every translation goes through), "anthropic" (Messages), "gemini"
-- (generateContent). Each module's reader turns its provider's events into
-- hub chunks, and its writer hub chunks into the client's wire text; a
-- route adapter (a table with start/chunk/finish/error_event functions) is
-- a writer too. Only the generic machinery is here: SSE feeding,
-- pass-through watching, bounds, the end and the usage.
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
--
-- What one request holds does not grow with what the provider sends: a
-- line or an event past sse.MAX_LINE / sse.MAX_EVENT (1 MiB) is never
-- held. A stream being translated, or rewritten on its way, fails there
-- with the client's error event; the upstream's later bytes are read and
-- dropped (a body filter cannot end the upstream exchange: the response's last
-- chunk comes when the upstream ends, or the client goes first); a stream
-- that is only watched for its usage passes on as it came, the oversized
-- event read from its last TAIL bytes (OpenAI formats) or skipped
-- (Anthropic's: usage is in message_start and message_delta, which are
-- small). The translators hold a bounded state per stream (see
-- protocols/*.lua), and a whole answer watched for its usage keeps its
-- last TAIL bytes past KEEP_WHOLE.

local json = require "aigw.json"
local log = require "aigw.log"
local request = require "aigw.request"
local sse = require "aigw.sse"
local usage_mod = require "aigw.usage"
local protocols = require "aigw.engine.protocols"
local state = require "aigw.engine.state"

local type, setmetatable, tostring, ipairs, pcall = type, setmetatable, tostring, ipairs, pcall
local find, sub, byte = string.find, string.sub, string.byte
local concat = table.concat
local decode = json.decode

local M = {}

-- An OpenAI-format event larger than this is not held (see raw_events);
-- what is kept of one (and of a whole answer past KEEP_WHOLE) is its end,
-- where usage is.
local MAX_EVENT = sse.MAX_EVENT
local TAIL = 65536
local KEEP_WHOLE = 1048576
M.TAIL = TAIL

-- Appends piece to parts[1..n] and returns the new count. Pieces are merged
-- while the last is at least as long as the one before (luaL_Buffer's
-- rule, as aigw.sse does): few are held however small they come, and each
-- byte is copied a few times at most.
local function push(parts, n, piece)
  n = n + 1
  parts[n] = piece
  while n > 1 and #parts[n - 1] <= #piece do
    piece = parts[n - 1] .. piece
    parts[n - 1], parts[n] = piece, nil
    n = n - 1
  end
  return n
end

local function clear(parts, n)
  for i = n, 1, -1 do parts[i] = nil end
end

local X = {}
X.__index = X

---------------------------------------------------------------------------

-- opts: client (a format's name, or a route adapter), upstream (a
-- format's name), stream, model (the upstream's model name), include_usage
-- (the client asked for a usage chunk), injected_usage (the gateway asked
-- the provider for it), prices (config overrides).
function M.new(ctx, o)
  local c, up = o.client, protocols[o.upstream]
  local self = setmetatable({
    ctx = ctx, client = c, upstream = o.upstream, stream = o.stream and true or false,
    model = o.model, include_usage = o.include_usage and true or false,
    injected_usage = o.injected_usage and true or false, prices = o.prices,
    same = c == o.upstream, failed = false, ended = false, done = false,
    up = up, w = type(c) == "table" and c or protocols[c].writer,
    acc = usage_mod.accumulator(up),
  }, X)
  if self.stream then
    if self.same and self.upstream == "openai" then
      self.rev = { parts = {}, n = 0, len = 0, last = 0, before = 0, big = false }   -- see raw_events
    else
      self.parser = sse.parser()
    end
  end
  state.of(ctx).reply = self
  return self
end

-- The client's writer: its format's (aigw.engine.protocols), or a route adapter.
function X:writer()
  return self.w
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
    local up = self.up
    if not up.hub then
      self.from = up.stream_to_hub(self.model, { include_usage = self.include_usage or self.client ~= "openai" })
    end
    local w = self.w
    if w.start then w.start(self) end
  end
  return status, head
end

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

local TOO_LARGE = "event too large (limit " .. MAX_EVENT .. " bytes)"

-- What an OpenAI-format pass-through holds of its unfinished event
-- (self.rev): parts[1..n] (merged by push, joined when its end comes), len
-- bytes in all, last and before its last two bytes (where the blank line
-- that ends it may have begun), big when it went past MAX_EVENT while only
-- watched.

local function reset(r)
  clear(r.parts, r.n)
  r.n, r.len, r.last, r.before, r.big = 0, 0, 0, 0, false
end

-- Holds piece as the latest bytes of the unfinished event. Past MAX_EVENT:
-- when the body is rewritten, nothing is held and the message says why
-- (its bytes were held back, so the client's stream can end cleanly at the
-- event before); when it is only watched, the event goes on being read but
-- only its last TAIL bytes are kept (big), where its usage is read at its
-- end.
local function hold(r, piece, rewrite)
  local parts, n = r.parts, r.n
  local len = r.len + #piece
  if len > MAX_EVENT then
    if rewrite then
      reset(r)
      return TOO_LARGE
    end
    r.big = true
    local s = sub(concat(parts, "", 1, n) .. piece, -TAIL)
    clear(parts, n)
    parts[1], n, len = s, 1, #s
  else
    n = push(parts, n, piece)
  end
  r.n, r.len = n, len
  if #piece >= 2 then
    r.before, r.last = byte(piece, -2, -1)
  else
    r.before, r.last = r.last, byte(piece)
  end
end

-- Where the blank line begun in what is held ends in chunk (1 or 2), else
-- nil: the cases of event_end with its LF, or its LF and a CR, held.
local function end_across(r, chunk)
  local c = byte(chunk, 1)
  if r.last == 10 then
    if c == 10 then return 1 end
    if c == 13 and byte(chunk, 2) == 10 then return 2 end
  elseif r.last == 13 and r.before == 10 and c == 10 then
    return 1
  end
  return nil
end

-- The complete events of an OpenAI-format stream so far, as raw text (the
-- bytes exactly as they came, comments included), each ending in its blank
-- line. An unfinished event waits for the next pieces (held by hold(): a
-- stream is never copied again per chunk, nor searched again from an
-- event's start). Returns the events and, when the body is rewritten and
-- an event went past MAX_EVENT, why the stream cannot go on.
local function raw_events(self, chunk, rewrite)
  local out, at, len = {}, 1, #chunk
  if len == 0 then return out end
  local r = self.rev
  local n = r.n
  if n > 0 then
    local e = end_across(r, chunk) or event_end(chunk, 1)
    if not e then return out, hold(r, chunk, rewrite) end
    -- past the bound only now: only its end is read, as for the pieces of one
    local big = r.big or (not rewrite and r.len + e > MAX_EVENT)
    local ev = concat(r.parts, "", 1, n) .. sub(chunk, 1, e)
    reset(r)
    if big then
      self:read_usage(ev)
    elseif rewrite and #ev > MAX_EVENT then
      return out, TOO_LARGE
    else
      out[1] = ev
    end
    at = e + 1
  end
  while true do
    local e = event_end(chunk, at)
    if not e then break end
    if e - at >= MAX_EVENT then
      -- one chunk held the whole of an event past the bound
      if rewrite then return out, TOO_LARGE end
      self:read_usage(sub(chunk, e - TAIL + 1 > at and e - TAIL + 1 or at, e))
    else
      out[#out + 1] = sub(chunk, at, e)
    end
    at = e + 1
  end
  if at <= len then return out, hold(r, at == 1 and chunk or sub(chunk, at), rewrite) end
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
    -- read. Usage comes last: past KEEP_WHOLE only the last TAIL bytes
    -- are kept.
    local parts = self.parts
    if not parts then parts, self.np, self.kept = {}, 0, 0; self.parts = parts end
    if chunk ~= "" then
      local kept = self.kept + #chunk
      if kept > KEEP_WHOLE then
        local last = sub(concat(parts, "", 1, self.np) .. chunk, -TAIL)
        clear(parts, self.np)
        parts[1], self.np, self.kept = last, 1, #last
      else
        self.np, self.kept = push(parts, self.np, chunk), kept
      end
    end
    if eof then
      self:read_usage(concat(parts, "", 1, self.np))
      self:finish(true)
    end
    return chunk
  end
  if self.ended then return "" end   -- refused: nothing more goes out
  local up = self.up
  local named = up.usage_events
  if named then
    -- Watched only, event by event (the events that carry usage are
    -- decoded): an event past the parser's bounds is skipped (the bytes
    -- pass on as they came) and the next ones are read.
    local evs, perr = self.parser:feed(chunk)
    for _, ev in ipairs(evs) do
      if named[ev.event] then
        local d = decode(ev.data)
        local u = type(d) == "table" and up.event_usage(d)
        if u then self.acc:event(u) end
      end
    end
    if perr then
      log.info("upstream ", tostring(self.ctx.provider or self.upstream), ": event not read for usage: ", perr)
    end
    if eof then self:finish(true) end
    return chunk
  end
  local rewrite = self.injected_usage
  local out = rewrite and {} or nil
  local evs, why = raw_events(self, chunk, rewrite)
  for _, ev in ipairs(evs) do
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
  if why then
    -- Only when rewriting: the events before it, then the client's error
    -- event; the upstream's bytes after it are dropped.
    out[#out + 1] = self:refuse(why)
    return concat(out)
  end
  if eof then
    local r = self.rev
    if rewrite and r.n > 0 then out[#out + 1] = concat(r.parts, "", 1, r.n) end
    reset(r)
    self:finish(true)
  end
  if rewrite then return concat(out) end
  return chunk
end

-- Reads the top-level usage object of a whole JSON answer (or of the end
-- of one: see hold): the last "usage" key of the text whose value is an
-- object (providers write it last; a key of that name in the content would
-- be inside an escaped string or before it), decoded alone, so the answer
-- itself is never decoded. Plain searches only: this runs on every answer
-- that passes through.
local cjson_decode = require("cjson.safe").decode

-- Where the object after a key ending at i - 1 begins: ':' and '{' after
-- optional whitespace; nil when the value is something else. Byte loops
-- (which LuaJIT compiles) rather than patterns (which it does not).
local function object_after(body, i)
  local c = byte(body, i)
  while c == 32 or c == 9 or c == 10 or c == 13 do i = i + 1; c = byte(body, i) end
  if c ~= 58 then return nil end
  i = i + 1
  c = byte(body, i)
  while c == 32 or c == 9 or c == 10 or c == 13 do i = i + 1; c = byte(body, i) end
  if c ~= 123 then return nil end
  return i
end

function X:read_usage(body)
  local at, open = 1, nil
  while true do
    local s = find(body, '"usage"', at, true)
    if not s then break end
    open = object_after(body, s + 7) or open
    at = s + 7
  end
  if not open then return end
  -- the object's end: braces counted, strings skipped
  local n, i, depth, instr = #body, open, 0, false
  while i <= n do
    local c = byte(body, i)
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
        if type(u) == "table" then self.acc:event(self.up.usage_event(u)) end
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
-- The names of every count the formats' counted_usage reads.
local COUNTS = { "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens",
                 "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                 "cached_tokens", "reasoning_tokens" }
local count_names = ffi.new("const char *[?]", #COUNTS, COUNTS)
local count_lens = ffi.new("size_t[?]", #COUNTS)
local COUNT_AT = {}
for i, k in ipairs(COUNTS) do count_lens[i - 1] = #k; COUNT_AT[k] = i - 1 end
local counts = ffi.new("double[?]", #COUNTS)

local function count(name)
  local i = COUNT_AT[name]
  if not i then return nil end
  local v = counts[i]
  if v < 0 then return nil end
  return v
end

function X:tapped(text)
  if text ~= "" then
    for i = 0, #COUNTS - 1 do counts[i] = -1 end
    ffi.C.aigw_json_numbers(text, #text, count_names, count_lens, #COUNTS, counts)
    -- A whole answer: its usage is the one the counts make, nothing to
    -- accumulate.
    local up = self.up
    self.usage = up.usage(up.counted_usage(count))
  end
  self:finish(true)
end

-- The stream ends with the provider's failure (an error event, or the
-- upstream gone): the client's error event, and nothing after it.
function X:fail(message, etype)
  if type(etype) ~= "string" then etype = nil end   -- the provider's, written as it is
  self.failed = true
  self.ended = true
  -- nothing is read after it: what was held goes
  self.parser, self.rev = nil, nil
  self:finish(false)
  return self.w.error_event(self, message, etype)
end

-- Translated stream: every complete event is translated and written now.
-- A line or an event past the parser's bounds, or a stream past a
-- translator's (too many content blocks, tool calls or candidates), ends it
-- with the client's error event after the events that came before; the
-- upstream's bytes after it are dropped.
function X:translate(chunk, eof, err)
  if self.ended then return "" end
  local out = {}
  local read, w = self.up.reader.event, self.w
  -- After an event the parser dropped, none is the client's: the events
  -- before it only. why: a translator's or the writer's bound.
  local evs, perr, nbefore = self.parser:feed(chunk)
  for i = 1, perr and nbefore or #evs do
    local chunks, msg, etype, why = read(self, evs[i])
    if chunks then
      for _, c in ipairs(chunks) do
        local s, werr = w.chunk(self, c)
        if s then out[#out + 1] = s end
        if werr then why = werr; break end
      end
    end
    if why then perr = why; break end
    if not chunks then
      out[#out + 1] = self:fail(msg, etype)
      return concat(out)
    end
  end
  if perr then
    out[#out + 1] = self:refuse(perr)
    return concat(out)
  end
  if err then
    out[#out + 1] = self:fail("upstream stream failed: " .. err)
  elseif eof then
    for _, c in ipairs(self.up.reader.finish(self)) do
      local s, werr = w.chunk(self, c)
      if s then out[#out + 1] = s end
      if werr then
        out[#out + 1] = self:refuse(werr)
        return concat(out)
      end
    end
    -- ctx.usage and ctx.cost first: a writer's last words may report them
    -- (a route adapter's final event does).
    self.ended = true
    self:finish(true)
    local s, werr = w.finish(self)
    if s then out[#out + 1] = s end
    if werr then out[#out + 1] = self:refuse(werr) end
  end
  return concat(out)
end

-- A stream ended by the gateway (a bound, or what it cannot write): logged
-- with the request's id (specs run without one), then the client's error
-- event.
function X:refuse(why)
  local ok, id = pcall(request.id)
  log.warn("request ", ok and id or "-", ": upstream ", tostring(self.ctx.provider or self.upstream),
           ": stream refused: ", why)
  return self:fail("upstream stream failed: " .. why)
end

-- The head is seen first for translated streams and for pass-through
-- bodies that are rewritten; one that only watches may not see it. A
-- second result true: the client's stream has ended (the provider's error
-- event, or the gateway refused the stream) before the upstream's did, so
-- the core ends the response now and closes the upstream connection.
function X:body(chunk, eof, err)
  local out = self:body_piece(chunk, eof, err)
  return out, self.ended and not eof and not err
end

function X:body_piece(chunk, eof, err)
  if self.error_status or self.raw or not (self.same or self.status) then
    if eof then self:finish(true) end
    return chunk
  end
  if not self.same then return self:translate(chunk, eof, err) end
  if err then
    -- The error event follows complete events only; a half-written event
    -- is cut off (the client sees a broken stream, not a bad event).
    local p, r = self.parser, self.rev
    local mid_event = (r and (r.n > 0 or r.big)) or (p and (p._nparts > 0 or p._pending))
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

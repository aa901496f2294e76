-- stream.lua -- the Lua side of fuzz_stream: one fuzz input drives the SSE
-- parser or one direction of aigw.engine.reply (the runtime's response filters)
-- and checks what comes out. Returns the function the C target calls with
-- each input; a finding is an error, which the target turns into abort().
--
-- Input: byte 1 picks the case (CASES below), byte 2 the flags, and the
-- rest is split.h's format (cuts, then the payload: the upstream's body).
-- Flags: 1 the client asked for usage, 2 the gateway asked for it on the
-- client's behalf, 4|8 how the body ends (0 eof on the last piece or after
-- it, 4 the upstream fails mid-body, 8 cut off: only the log phase's
-- finish(false), 12 eof on an empty piece of its own), 16 the answer is
-- not text/event-stream, 32 an error status, 64 a non-stream answer (the
-- pass-through cases only).
--
-- Checked: the reply never raises and returns strings; a pass-through
-- body goes out as it came (but for the usage chunk the gateway asked
-- for); a translated stream is a complete, well-formed stream of the
-- client's format (OpenAI chunks ending in [DONE] or an error event;
-- Anthropic's event sequence ending in message_stop or an error event;
-- an adapter's JSON events); ctx.usage holds numbers. The SSE parser gives
-- the same events whatever the cuts.

local sse = require "aigw.sse"
local json = require "aigw.json"
local reply = require "aigw.engine.reply"
local gemini = require "aigw.engine.protocols.gemini"

local byte, sub, find = string.byte, string.sub, string.find
local concat = table.concat
local null = json.null

-- Time and Gemini's random tool-call ids pinned: a finding replays.
local time = os.time
os.time = function(t) if t then return time(t) end return 1700000000 end
local ids = 0
gemini.new_tool_call_id = function() ids = ids + 1; return "call_fuzz_" .. ids end
-- The adapters' timing field reads the request's clock: there is no request.
local adapters = require "aigw.engine.adapters"
require("adapters.seed-common").processing_time_ms = function() return 0 end

local MODEL = { openai = "gpt-4o-mini", anthropic = "claude-3-5-haiku-latest", gemini = "gemini-2.0-flash" }

local CASES = {
  { "sse" },
  { "anthropic", "openai" },
  { "gemini", "openai" },
  { "openai", "anthropic" },
  { "gemini", "anthropic" },
  { "anthropic", "anthropic" },
  { "openai", "openai" },
  { "openai", "seed-chat" },
  { "anthropic", "seed-text-generation" },
  { "gemini", "seed-chat" },
}

-- Findings reported and not fixed yet, each with its reproducer under
-- tests/fuzz/findings/stream/: an input that only reaches one of them ends
-- quietly ("known: ..."), so that the fuzzer goes on looking for others and
-- CI stays green. AIGW_FUZZ_STRICT=1 makes them findings again (to check a
-- fix: then take the entry out).
local KNOWN = {
}
local strict = os.getenv("AIGW_FUZZ_STRICT") == "1"

local function finding(fmt, ...)
  local msg = string.format(fmt, ...)
  if not strict then
    for _, k in ipairs(KNOWN) do
      if find(msg, k[2]) then error("known: " .. k[1], 0) end
    end
  end
  error("finding: " .. msg, 0)
end

-- split.h's cuts, in Lua.
local function pieces(s)
  local m = #s > 0 and (byte(s, 1) % 32) or 0
  if 1 + m > #s then m = #s > 0 and #s - 1 or 0 end
  local lens = {}
  for i = 1, m do lens[i] = byte(s, 1 + i) + 1 end
  local payload = sub(s, 2 + m)
  local out, off, k = {}, 1, 0
  while off <= #payload do
    local len = #payload - off + 1
    if m > 0 then
      local want = lens[k % m + 1]
      k = k + 1
      if want < len then len = want end
    end
    out[#out + 1] = sub(payload, off, off + len - 1)
    off = off + len
  end
  return out, payload
end

local function same_events(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    local x, y = a[i], b[i]
    if x.data ~= y.data or x.event ~= y.event or x.id ~= y.id or x.retry ~= y.retry then return false end
  end
  return true
end

local function parse_all(p, list)
  local out = {}
  for _, s in ipairs(list) do
    for _, ev in ipairs(p:feed(s)) do out[#out + 1] = ev end
  end
  local rest = p:finish()
  for _, ev in ipairs(rest) do out[#out + 1] = ev end
  return out
end

local function check_sse(list, payload, flags)
  local opts = { dispatch_incomplete = flags % 2 == 1 }
  local whole = parse_all(sse.parser(opts), { payload })
  local cut = parse_all(sse.parser(opts), list)
  if not same_events(whole, cut) then
    finding("the SSE parser read %d events whole and %d in %d pieces", #whole, #cut, #list)
  end
  -- Writing an event's data back and reading it again gives the same data.
  for _, ev in ipairs(whole) do
    local name = ev.event and not find(ev.event, "[\r\n]") and ev.event or nil
    local again = parse_all(sse.parser(), { sse.event(ev.data, name) })
    if #again ~= 1 or again[1].data ~= ev.data then finding("sse.event does not read back as it was written") end
  end
end

-- The events of a client stream: the text must end at an event's end.
local function client_events(out)
  if out ~= "" and sub(out, -2) ~= "\n\n" then finding("the client's stream ends mid-event: %q", sub(out, -80)) end
  local evs = parse_all(sse.parser(), { out })
  for i, ev in ipairs(evs) do
    if ev.data ~= "[DONE]" then
      local d = json.decode(ev.data)
      if type(d) ~= "table" then finding("event %d is not a JSON object: %q", i, sub(ev.data, 1, 200)) end
      ev.json = d
    end
  end
  return evs
end

local function is_str(v) return type(v) == "string" end
local function opt_str(v) return v == nil or v == null or type(v) == "string" end
local function is_num(v) return type(v) == "number" and v == v end

local function check_usage_table(u, what)
  if u == nil or u == null then return end
  if type(u) ~= "table" then finding("%s: usage is a %s", what, type(u)) end
  for k, v in pairs(u) do
    if type(v) ~= "number" and type(v) ~= "table" then finding("%s: usage.%s is a %s", what, tostring(k), type(v)) end
  end
end

local function check_error_event(d, i, n, what)
  local e = d.error
  if type(e) ~= "table" or not is_str(e.message) then finding("%s: error event %d without a message", what, i) end
  if i ~= n then finding("%s: an error event (%d) is followed by %d more", what, i, n - i) end
end

-- OpenAI chat completion chunks, then [DONE] or an error event.
local function check_openai(evs, ending)
  local n = #evs
  for i, ev in ipairs(evs) do
    if ev.data == "[DONE]" then
      if i ~= n then finding("openai: [DONE] is followed by %d more events", n - i) end
    else
      local d = ev.json
      if d.error ~= nil then
        check_error_event(d, i, n, "openai")
      else
        if d.object ~= "chat.completion.chunk" then finding("openai: event %d is not a chunk", i) end
        if type(d.choices) ~= "table" then finding("openai: chunk %d has no choices list", i) end
        for _, c in ipairs(d.choices) do
          if type(c) ~= "table" or not is_num(c.index) or type(c.delta) ~= "table" then
            finding("openai: chunk %d has a choice without index or delta", i)
          end
          if not opt_str(c.finish_reason) then
            finding("openai: chunk %d: finish_reason is a %s", i, type(c.finish_reason))
          end
          local dl = c.delta
          if not opt_str(dl.content) then finding("openai: chunk %d: content is a %s", i, type(dl.content)) end
          if dl.role ~= nil and dl.role ~= "assistant" then
            finding("openai: chunk %d: role %s", i, tostring(dl.role))
          end
          if dl.tool_calls ~= nil then
            if type(dl.tool_calls) ~= "table" then
              finding("openai: chunk %d: tool_calls is a %s", i, type(dl.tool_calls))
            end
            for _, tc in ipairs(dl.tool_calls) do
              if type(tc) ~= "table" or not is_num(tc.index) then
                finding("openai: chunk %d: a tool call without index", i)
              end
              local fn = tc["function"]
              if fn ~= nil and (type(fn) ~= "table" or not opt_str(fn.name) or not opt_str(fn.arguments)) then
                finding("openai: chunk %d: a tool call's function is not strings", i)
              end
              if not opt_str(tc.id) then finding("openai: chunk %d: a tool call id is a %s", i, type(tc.id)) end
            end
          end
        end
        check_usage_table(d.usage, "openai chunk " .. i)
      end
    end
  end
  local last = evs[n]
  local closed = last and (last.data == "[DONE]" or (last.json and last.json.error ~= nil))
  if ending == "eof" and not closed then finding("openai: a complete stream does not end with [DONE] or an error") end
  if ending == "err" and not (last and last.json and last.json.error ~= nil) then
    finding("openai: a failed stream does not end with an error event")
  end
  if ending == "cut" and last and last.data == "[DONE]" then finding("openai: a cut stream ends with [DONE]") end
end

local TOOL_ID = "^[a-zA-Z0-9_-]+$"

-- Anthropic's sequence: message_start, blocks (start, deltas, stop),
-- message_delta, message_stop; or an error event, last.
local function check_anthropic(evs, ending)
  local n = #evs
  local started, blocks, open, delta_seen, stopped = false, {}, nil, false, false
  for i, ev in ipairs(evs) do
    local d, name = ev.json, ev.event
    if d == nil then finding("anthropic: event %d has no JSON data", i) end
    if d.type ~= name then
      finding("anthropic: event %d is named %s, its data's type is %s", i, tostring(name), tostring(d.type))
    end
    if stopped then finding("anthropic: event %s after message_stop", tostring(name)) end
    if name == "error" then
      check_error_event(d, i, n, "anthropic")
      if not is_str(d.error.type) then finding("anthropic: error event without a type") end
    elseif name == "ping" then  -- luacheck: ignore 542
      -- anywhere: nothing to check, but not an unknown event either
    elseif name == "message_start" then
      if i ~= 1 then finding("anthropic: message_start is event %d", i) end
      local m = d.message
      if type(m) ~= "table" or not is_str(m.id) or m.role ~= "assistant" or type(m.content) ~= "table" then
        finding("anthropic: message_start's message is incomplete")
      end
      check_usage_table(m.usage, "message_start")
      started = true
    else
      if not started then finding("anthropic: %s before message_start", tostring(name)) end
      if name == "content_block_start" then
        if delta_seen then finding("anthropic: a block starts after message_delta") end
        if open then finding("anthropic: block %d starts while block %d is open", #blocks, open) end
        if d.index ~= #blocks then finding("anthropic: block index %s, expected %d", tostring(d.index), #blocks) end
        local b = d.content_block
        if type(b) ~= "table" then finding("anthropic: content_block_start without a block") end
        if b.type == "text" then
          if not is_str(b.text) then finding("anthropic: a text block's text is a %s", type(b.text)) end
        elseif b.type == "tool_use" then
          if not is_str(b.id) or not b.id:match(TOOL_ID) then finding("anthropic: tool_use id %q", tostring(b.id)) end
          if not is_str(b.name) then finding("anthropic: tool_use name is a %s", type(b.name)) end
          if type(b.input) ~= "table" then finding("anthropic: tool_use input is a %s", type(b.input)) end
        else
          finding("anthropic: a block of type %s", tostring(b.type))
        end
        blocks[#blocks + 1] = b.type
        open = d.index
      elseif name == "content_block_delta" then
        local idx, dl = d.index, d.delta
        if not is_num(idx) or idx < 0 or idx >= #blocks or type(dl) ~= "table" then
          finding("anthropic: a delta for block %s of %d", tostring(idx), #blocks)
        end
        local kind = blocks[idx + 1]
        if dl.type == "text_delta" then
          if kind ~= "text" or idx ~= open then finding("anthropic: a text delta for block %d (%s)", idx, kind) end
          if not is_str(dl.text) then finding("anthropic: text_delta's text is a %s", type(dl.text)) end
        elseif dl.type == "input_json_delta" then
          -- A late piece of an earlier call goes to that call's block.
          if kind ~= "tool_use" then finding("anthropic: an input_json_delta for a %s block", kind) end
          if not is_str(dl.partial_json) then finding("anthropic: partial_json is a %s", type(dl.partial_json)) end
        else
          finding("anthropic: a delta of type %s", tostring(dl.type))
        end
      elseif name == "content_block_stop" then
        if d.index ~= open then
          finding("anthropic: content_block_stop for %s, open is %s", tostring(d.index), tostring(open))
        end
        open = nil
      elseif name == "message_delta" then
        if open then finding("anthropic: message_delta while block %d is open", open) end
        if delta_seen then finding("anthropic: a second message_delta") end
        delta_seen = true
        if type(d.delta) ~= "table" or not opt_str(d.delta.stop_reason) then
          finding("anthropic: message_delta's stop_reason")
        end
        if type(d.usage) ~= "table" or not is_num(d.usage.output_tokens) then
          finding("anthropic: message_delta's usage")
        end
        check_usage_table(d.usage, "message_delta")
      elseif name == "message_stop" then
        if not delta_seen then finding("anthropic: message_stop without message_delta") end
        stopped = true
      else
        finding("anthropic: an event named %s", tostring(name))
      end
    end
  end
  local last = evs[n]
  local errored = last and last.event == "error"
  if ending == "eof" and not (stopped or errored) then
    finding("anthropic: a complete stream does not end with message_stop or an error")
  end
  -- A failed stream ends with the error event, unless its message had
  -- ended already (OpenAI sends the finish and usage chunks before [DONE]):
  -- nothing may follow message_stop.
  if ending == "err" and not (errored or stopped) then
    finding("anthropic: a failed stream does not end with an error event")
  end
  -- A cut stream may well have ended its message already (OpenAI sends the
  -- finish and usage chunks before [DONE]).
end

-- An adapter's stream: JSON events, then [DONE] or an error event.
local function check_adapter(evs, ending)
  local n = #evs
  for i, ev in ipairs(evs) do
    if ev.data == "[DONE]" then
      if i ~= n then finding("adapter: [DONE] is followed by %d more events", n - i) end
    elseif ev.json.error ~= nil then
      check_error_event(ev.json, i, n, "adapter")
    end
  end
  local last = evs[n]
  local closed = last and (last.data == "[DONE]" or (last.json and last.json.error ~= nil))
  if ending == "eof" and not closed then finding("adapter: a complete stream does not end with [DONE] or an error") end
  if ending == "err" and not (last and last.json and last.json.error ~= nil) then
    finding("adapter: a failed stream does not end with an error event")
  end
end

local function check_ctx_usage(ctx)
  local u = ctx.usage
  if u ~= nil then
    if type(u) ~= "table" then finding("ctx.usage is a %s", type(u)) end
    for k, v in pairs(u) do
      if k == "partial" then
        if type(v) ~= "boolean" then finding("ctx.usage.partial is a %s", type(v)) end
      elseif type(v) ~= "number" then
        finding("ctx.usage.%s is a %s", tostring(k), type(v))
      end
    end
  end
  if ctx.cost ~= nil and type(ctx.cost) ~= "number" then finding("ctx.cost is a %s", type(ctx.cost)) end
end

local function call(what, f, ...)
  local res = { pcall(f, ...) }
  if not res[1] then finding("%s raised: %s", what, tostring(res[2])) end
  return unpack(res, 2, 3)
end

local function run_reply(case, flags, list, payload)
  local upstream, client = case[1], case[2]
  local writer = client
  if find(client, "-", 1, true) then writer = adapters.load(client) end
  local same = upstream == client
  local stream = not (same and flags % 128 >= 64)
  local ending = ({ "eof", "err", "cut", "eof_empty" })[math.floor(flags / 4) % 4 + 1]
  local sse_head = flags % 32 < 16
  local status = flags % 64 >= 32 and 429 or 200
  local ctx = {}
  local x = reply.new(ctx, { client = writer, upstream = upstream, stream = stream,
                             model = MODEL[upstream], include_usage = flags % 2 == 1,
                             injected_usage = flags % 4 >= 2 })
  local head = "Content-Type: " .. (sse_head and "text/event-stream" or "application/json") ..
               "\r\nx-request-id: fuzz\r\n"
  local st, h = call("head", x.head, x, status, head)
  if type(st) ~= "number" or type(h) ~= "string" then finding("head returned %s, %s", type(st), type(h)) end

  local out = {}
  local function body(chunk, eof, err)
    local s = call("body", x.body, x, chunk, eof, err)
    if s ~= nil and type(s) ~= "string" then finding("body returned a %s", type(s)) end
    out[#out + 1] = s or ""
  end
  local n = #list
  for i = 1, n do
    body(list[i], ending == "eof" and i == n)
  end
  if ending == "eof" and n == 0 then body("", true) end
  if ending == "eof_empty" then body("", true) end
  if ending == "err" then body("", true, "upstream timeout") end
  -- The log phase ends what is left (a stream cut short).
  call("finish", x.finish, x, false)
  check_ctx_usage(ctx)

  local text = concat(out)
  local translated = not same and stream and sse_head and status < 400
  local rewrites = same and upstream == "openai" and stream and sse_head and status < 400 and flags % 4 >= 2
  ending = ending == "eof_empty" and "eof" or ending
  if translated then
    local evs = client_events(text)
    if client == "openai" then check_openai(evs, ending)
    elseif client == "anthropic" then check_anthropic(evs, ending)
    else check_adapter(evs, ending) end
  elseif rewrites then
    if ending ~= "err" and #text > #payload then
      finding("the pass-through body grew from %d to %d bytes", #payload, #text)
    end
  elseif ending ~= "err" or not (same and stream and sse_head and status < 400) then
    -- Passed on as it came. (A pass-through stream that fails gets the
    -- client's error event after the bytes.)
    if text ~= payload then finding("a pass-through body changed (%d bytes in, %d out)", #payload, #text) end
  end
end

return function(input)
  ids = 0
  local which = byte(input, 1) or 0
  local flags = byte(input, 2) or 0
  local case = CASES[which % #CASES + 1]
  local list, payload = pieces(sub(input, 3))
  if case[1] == "sse" then
    check_sse(list, payload, flags)
  else
    run_reply(case, flags, list, payload)
  end
end

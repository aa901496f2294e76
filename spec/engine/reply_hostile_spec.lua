-- aigw.engine.reply against a hostile or broken provider: what one request
-- holds stays bounded whatever the stream (counted in the reply's and
-- its parser's state after every piece, never timed), and the client's
-- stream ends well-formed in its own format.

local json = require "aigw.json"
local sse = require "aigw.sse"
local reply = require "aigw.engine.reply"
local anthropic = require "aigw.engine.protocols.anthropic"
local gemini = require "aigw.engine.protocols.gemini"
local h = require "aigw.test.helpers"

local concat = table.concat
local MIB = 1048576

local SSE_HEAD = "Content-Type: text/event-stream\r\n"
local MODEL = { openai = "gpt-4o-mini", anthropic = "claude-3-5-haiku-latest", gemini = "gemini-2.0-flash" }

local golden = dofile(h.prefix .. "/spec/support/golden.lua")

-- A golden case's upstream stream (spec/golden/reply/<name>.json).
local function read(name)
  return golden.load("reply", name).input.stream
end

-- The first n events of a recorded stream.
local function first_events(s, n)
  local at = 1
  for _ = 1, n do
    local _, e = s:find("\r?\n\r?\n", at)
    at = e + 1
  end
  return s:sub(1, at - 1)
end

-- Bytes and pieces a reply holds between calls: its parser's pending
-- line and event, and the pieces of an unfinished raw event or whole answer.
local function held(x)
  local bytes, pieces = 0, 0
  local function add(t)
    for _, v in pairs(t or {}) do bytes, pieces = bytes + #v, pieces + 1 end
  end
  local p = x.parser
  if p then add(p._parts); add(p._data) end
  add(x.rev and x.rev.parts)
  add(x.parts)
  return bytes, pieces
end

-- A client's stream as (name, decoded data) pairs; it must end with a
-- complete event.
local function events(s)
  local out = {}
  s = s:gsub("\r\n", "\n")
  if s == "" then return out end
  assert.equal("\n\n", s:sub(-2), "the stream ends with a complete event")
  for ev in s:gmatch("(.-)\n\n") do
    if ev:sub(1, 1) ~= ":" then
      local name, data = ev:match("^event: ([^\n]*)\n"), ev:match("data: ([^\n]*)$")
      assert.is_not_nil(data, "an event with data: " .. ev)
      local d = data == "[DONE]" and data or json.decode(data)
      assert.is_not_nil(d, "JSON data: " .. data:sub(1, 200))
      out[#out + 1] = { event = name, data = d }
    end
  end
  return out
end

-- The client's stream ends with one error event in its format, about why,
-- with nothing after it (no [DONE], no message_stop).
local function assert_error_ending(client, text, why)
  local evs = events(text)
  local last = evs[#evs]
  assert.is_not_nil(last, "an error event")
  for i = 1, #evs - 1 do
    local d = evs[i].data
    assert.is_true(d ~= "[DONE]" and evs[i].event ~= "error" and not (type(d) == "table" and d.error),
                   "only the last event is an error")
  end
  if client == "openai" then
    assert.is_nil(last.event)
    assert.equal("server_error", last.data.error.type)
    assert.truthy(last.data.error.message:find("upstream stream failed: " .. why, 1, true), last.data.error.message)
  else
    assert.equal("error", last.event)
    assert.same({ type = "error", error = { type = "api_error", message = last.data.error.message } }, last.data)
    assert.truthy(last.data.error.message:find("upstream stream failed: " .. why, 1, true), last.data.error.message)
  end
  return evs
end

local function new(upstream, client, o)
  o = o or {}
  local ctx = {}
  local x = reply.new(ctx, { client = client, upstream = upstream, stream = true,
                             model = MODEL[upstream], include_usage = o.include_usage,
                             injected_usage = o.injected_usage })
  assert.equal(200, (x:head(200, SSE_HEAD)))
  return x, ctx
end

-- Feeds s to x in pieces of size, checking what x holds after each; returns
-- the client's text.
local function feed(x, s, size, limit)
  local out = {}
  for i = 1, #s, size do
    out[#out + 1] = x:body(s:sub(i, i + size - 1), false)
    local bytes, pieces = held(x)
    assert(bytes <= limit, ("%d bytes held, bound %d (pieces of %d)"):format(bytes, limit, size))
    assert(pieces <= 24, ("%d pieces held (pieces of %d)"):format(pieces, size))
  end
  return concat(out)
end

-- Hostile tails, after a few good events: 3 MiB in one line; 3 MiB of data
-- lines in one event; 1.2 million empty data lines in one event.
local HOSTILE = {
  { "an endless line", "line too long", function() return "data: " .. ("x"):rep(3 * MIB) end },
  { "an endless event", "event too large",
    function() return ('data: {"pad":"' .. ("y"):rep(1000) .. '"}\n'):rep(3 * 1024) end },
  { "tiny data lines", "event too large", function() return ("data:\n"):rep(1200000) end },
}

-- Translated streams, and the OpenAI pass-through the gateway rewrites (it
-- asked for the usage chunk on the client's behalf).
local PAIRS = {
  { "anthropic", "openai", "anthropic_text", 3 },
  { "gemini", "openai", "gemini_text", 2 },
  { "openai", "anthropic", "openai_text", 3 },
  { "gemini", "anthropic", "gemini_text", 2 },
  { "anthropic", "anthropic", nil },     -- watched only: below
  -- cut into raw events, not parsed: an event past the bound, whatever made it
  { "openai", "openai", "openai_text", 3, injected_usage = true, why = "event too large" },
}

describe("aigw.engine.reply hostile streams", function()
  for _, pair in ipairs(PAIRS) do
    local upstream, client, file, n = pair[1], pair[2], pair[3], pair[4]
    for _, hostile in ipairs(file and HOSTILE or {}) do
      it(("%s -> %s client: %s ends the stream with an error event, holding at most 1 MiB"):format(
           upstream, client, hostile[1]), function()
        local tail = hostile[3]()
        for _, size in ipairs({ 1000, 16384, 65536 }) do
          local logged = h.capture_log(h.pinned, function()
            local x, ctx = new(upstream, client, { injected_usage = pair.injected_usage })
            local good = first_events(read(file), n)
            -- a line being read, and the data lines of its event
            local out = feed(x, good .. tail, size, 2 * MIB)
            local evs = assert_error_ending(client, out, pair.why or hostile[2])
            assert.is_true(#evs > 1, "the good events came first")
            assert.is_true(x.failed)
            -- and nothing after it, whatever comes
            assert.equal("", x:body(("z"):rep(100000), false))
            assert.equal("", x:body("data: {}\n\n", true))
            assert.equal("", x:body("", true, "upstream closed"))
            assert.same({ 0, 0 }, { held(x) })
            if ctx.usage then assert.is_true(ctx.usage.partial) end
          end)
          -- once, with the provider (the request id where there is one)
          local _, times = logged:gsub("stream refused: " .. (pair.why or hostile[2]), "")
          assert.equal(1, times, logged)
        end
      end)
    end
  end

  it("a translated stream: the events after a dropped one in the same piece are not sent", function()
    h.capture_log(h.pinned, function()
      local x = new("anthropic", "openai")
      local s = first_events(read("anthropic_text"), 3) ..
                "event: content_block_delta\ndata: " .. ("w"):rep(MIB + 10) .. "\n\n" ..
                'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,' ..
                '"delta":{"type":"text_delta","text":"LATE"}}\n\n'
      local out = x:body(s, false)
      assert.is_nil(out:find("LATE", 1, true))
      assert_error_ending("openai", out, "line too long")
    end)
  end)
end)

describe("aigw.engine.reply watched streams past the bounds", function()
  it("Anthropic pass-through: the bytes as they came, an oversized event skipped, usage read after it", function()
    local s = first_events(read("anthropic_text"), 2) ..
              'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":' ..
              '{"type":"document","source":{"type":"base64","data":"' .. ("A"):rep(3 * MIB) .. '"}}}\n\n' ..
              'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},' ..
              '"usage":{"output_tokens":42}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
    for _, size in ipairs({ 1000, 65536 }) do
      local x, ctx = new("anthropic", "anthropic")
      local out
      local logged = h.capture_log(function() out = feed(x, s, size, MIB) end)
      assert.is_nil(logged:find("refused", 1, true))
      out = out .. x:body("", true)
      assert.equal(s, out)
      assert.is_false(x.failed)
      assert.equal(42, ctx.usage.completion_tokens)
      assert.equal(7, ctx.usage.prompt_tokens)
      assert.is_nil(ctx.usage.partial)
    end
  end)

  it("OpenAI pass-through the client asked usage of: an oversized event passes, its usage read from its end", function()
    -- the Responses API: response.completed carries the whole answer, usage near its end
    local completed = 'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r",' ..
      '"output":[{"type":"message","content":[{"type":"output_text","text":"' .. ("t"):rep(3 * MIB) .. '"}]}],' ..
      '"usage":{"input_tokens":11,"output_tokens":22,"total_tokens":33},"metadata":{"usage":"not this"}}}\n\n'
    local s = 'event: response.created\ndata: {"type":"response.created","response":{"id":"r","usage":null}}\n\n' ..
              completed
    for _, size in ipairs({ 1000, 16384, 65536, #s }) do
      local x, ctx = new("openai", "openai", { include_usage = true })
      local out = feed(x, s, size, MIB + reply.TAIL)
      out = out .. x:body("", true)
      assert.equal(s, out)
      assert.equal(11, ctx.usage.prompt_tokens)
      assert.equal(22, ctx.usage.completion_tokens)
      assert.equal(33, ctx.usage.total_tokens)
    end
  end)

  it("OpenAI pass-through, watched: an endless line passes on and is never held whole", function()
    local x, ctx = new("openai", "openai", { include_usage = true })
    local s = first_events(read("openai_text"), 2) .. "data: " .. ("x"):rep(4 * MIB)
    local out = feed(x, s, 16384, MIB + reply.TAIL)
    assert.equal(s, out)
    assert.equal("", x:body("", true))
    assert.is_nil(ctx.usage)
  end)

  it("a whole answer watched for its usage keeps its last bytes only", function()
    local ctx = {}
    local x = reply.new(ctx, { client = "openai", upstream = "openai", stream = false, model = "gpt-4o-mini" })
    x:head(200, "Content-Type: application/json\r\n")
    local body = '{"choices":[{"message":{"content":"' .. ("c"):rep(5 * MIB) .. '"}}],' ..
                 '"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}'
    for i = 1, #body, 7777 do
      x:body(body:sub(i, i + 7776), i + 7777 > #body)
      local bytes, pieces = held(x)
      assert.is_true(bytes <= MIB + 7777, bytes)
      assert.is_true(pieces <= 24, pieces)
    end
    assert.equal(11, ctx.usage.total_tokens)
  end)
end)

describe("aigw.engine.reply translators' bounds", function()
  local function anthropic_event(name, d)
    d.type = name
    return "event: " .. name .. "\ndata: " .. json.encode(d) .. "\n\n"
  end

  it("Anthropic upstream: past MAX_BLOCKS content blocks the stream fails; block indices are not kept as given", function()
    h.capture_log(h.pinned, function()
      local x = new("anthropic", "openai")
      local parts = { first_events(read("anthropic_text"), 1) }
      for i = 1, anthropic.MAX_BLOCKS + 10 do
        parts[#parts + 1] = anthropic_event("content_block_start",
          { index = i, content_block = { type = ("k"):rep(1000), text = "" } })
      end
      local out = x:body(concat(parts), false)
      assert_error_ending("openai", out, "too many content blocks (limit 1024)")
      local n = 0
      for _, b in pairs(x.from.blocks) do
        n = n + 1
        assert.equal("other", b.kind)
      end
      assert.equal(anthropic.MAX_BLOCKS, n)
    end)
  end)

  it("OpenAI upstream to an Anthropic client: past MAX_TOOL_CALLS tool calls the stream fails", function()
    h.capture_log(h.pinned, function()
      local x = new("openai", "anthropic")
      local parts = {}
      for i = 0, anthropic.MAX_TOOL_CALLS + 5 do
        parts[#parts + 1] = "data: " .. json.encode({ id = "c", choices = { { index = 0, delta = {
          tool_calls = { { index = i, id = "call_" .. i, type = "function",
                           ["function"] = { name = "f", arguments = "{}" } } } } } } }) .. "\n\n"
      end
      local out = x:body(concat(parts), false)
      assert_error_ending("anthropic", out, "too many tool calls (limit 1024)")
      local n = 0
      for _ in pairs(x.to.tools) do n = n + 1 end
      assert.equal(anthropic.MAX_TOOL_CALLS, n)
    end)
  end)

  it("Gemini upstream: past MAX_CHOICES candidates the stream fails; a NaN index raises nothing", function()
    h.capture_log(h.pinned, function()
      local x = new("gemini", "openai")
      local parts = { 'data: {"candidates":[{"index":"nan","content":{"parts":[{"text":"a"}]}}]}\n\n' }
      for i = 1, gemini.MAX_CHOICES + 5 do
        parts[#parts + 1] = 'data: {"candidates":[{"index":' .. i .. ',"content":{"parts":[{"text":"a"}]}}]}\n\n'
      end
      local out = x:body(concat(parts), false)
      assert_error_ending("openai", out, "too many candidates (limit 128)")
      local n = 0
      for _ in pairs(x.from.choices) do n = n + 1 end
      assert.equal(gemini.MAX_CHOICES, n)
    end)
  end)

  it("an id past MAX_ID bytes is not repeated in every chunk", function()
    h.pinned(function()
      local long = ("i"):rep(100000)
      local x = new("anthropic", "openai")
      local s = anthropic_event("message_start", { message = { id = long, model = long, usage = {} } }) ..
                anthropic_event("content_block_start", { index = 0, content_block = { type = "text", text = "" } })
      for _ = 1, 100 do
        s = s .. anthropic_event("content_block_delta", { index = 0, delta = { type = "text_delta", text = "a" } })
      end
      local out = x:body(s, false)
      assert.is_true(#out < 100 * 1000, #out)
      assert.is_nil(out:find(long, 1, true))

      x = new("gemini", "anthropic")
      local g = ""
      for _ = 1, 100 do
        g = g .. 'data: {"responseId":"' .. long .. '","candidates":[{"content":{"parts":[{"text":"a"}]},"index":0}]}\n\n'
      end
      out = x:body(g, true)
      assert.is_true(#out < 100 * 1000, #out)
      assert.is_nil(out:find(long, 1, true))
    end)
  end)

  it("Anthropic usage: made-up fields are not accumulated", function()
    local x, ctx = new("anthropic", "openai")
    local fields = {}
    for i = 1, 5000 do fields[#fields + 1] = '"f' .. i .. '":1' end
    local ev = 'event: message_delta\ndata: {"type":"message_delta","delta":{},"usage":{' ..
               concat(fields, ",") .. ',"output_tokens":3}}\n\n'
    x:body(first_events(read("anthropic_text"), 1) .. ev .. ev, true)
    local n = 0
    for _ in pairs(x.acc:raw()) do n = n + 1 end
    assert.is_true(n <= 4, n)
    assert.equal(3, ctx.usage.completion_tokens)

    -- and the same when the stream passes through
    x, ctx = new("anthropic", "anthropic")
    x:body(first_events(read("anthropic_text"), 1) .. ev, true)
    n = 0
    for _ in pairs(x.acc:raw()) do n = n + 1 end
    assert.is_true(n <= 4, n)
    assert.equal(3, ctx.usage.completion_tokens)
  end)

  it("a number out of a double's range fails the stream instead of raising", function()
    h.capture_log(h.pinned, function()
      local x = new("anthropic", "openai", { include_usage = true })
      local s = first_events(read("anthropic_text"), 3) ..
                'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},' ..
                '"usage":{"output_tokens":1e400}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
      assert_error_ending("openai", x:body(s, true), "a value the gateway cannot write")

      x = new("gemini", "openai")
      local out = x:body('data: {"candidates":[{"index":1e400,"content":{"parts":[{"text":"a"}]}}]}\n\n', true)
      assert_error_ending("openai", out, "a value the gateway cannot write")

      -- the usage that ends an Anthropic client's message: its message_delta
      -- cannot be written, so message_stop never went out and the error
      -- event must
      x = new("gemini", "anthropic")
      out = x:body('data: {"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}],' ..
                   '"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1e400}}\n\n', true)
      assert.is_nil(out:find("message_stop", 1, true))
      assert_error_ending("anthropic", out, "a value the gateway cannot write")

      -- a provider's error type that is no string
      x = new("anthropic", "openai")
      out = x:body('event: error\ndata: {"type":"error","error":{"type":{"n":1e400},"message":"m"}}\n\n', false)
      assert.equal("m", events(out)[1].data.error.message)
    end)
  end)
end)

describe("aigw.sse defaults the reply relies on", function()
  it("are 1 MiB", function()
    assert.equal(MIB, sse.MAX_LINE)
    assert.equal(MIB, sse.MAX_EVENT)
  end)
end)

-- aigw.sse: event-stream parser and writer.

local sse = require "aigw.sse"
local json = require "aigw.json"

local function parse_whole(s, opts)
  local p = sse.parser(opts)
  local evs = p:feed(s)
  local rest, incomplete = p:finish()
  for _, e in ipairs(rest) do evs[#evs + 1] = e end
  return evs, incomplete
end

local function parse_split(s, size, opts)
  local p = sse.parser(opts)
  local evs = {}
  for i = 1, #s, size do
    for _, e in ipairs(p:feed(s:sub(i, i + size - 1))) do evs[#evs + 1] = e end
  end
  local rest, incomplete = p:finish()
  for _, e in ipairs(rest) do evs[#evs + 1] = e end
  return evs, incomplete
end

local OPENAI_STREAM = table.concat({
  'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
  'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
  'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":" there \\u00e9\\n"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
  'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n',
  'data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
  'data: [DONE]\n\n',
})

local ANTHROPIC_STREAM = table.concat({
  'event: message_start\r\ndata: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}\r\n\r\n',
  'event: content_block_start\r\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\r\n\r\n',
  'event: ping\r\ndata: {"type": "ping"}\r\n\r\n',
  'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\r\n\r\n',
  'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}\r\n\r\n',
  'event: content_block_stop\r\ndata: {"type":"content_block_stop","index":0}\r\n\r\n',
  'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}\r\n\r\n',
  'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n',
})

local GEMINI_STREAM = table.concat({
  'data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.5-flash","responseId": "abc"}\r\n\r\n',
  'data: {"candidates": [{"content": {"parts": [{"text": " sky is blue."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 6,"totalTokenCount": 40,"thoughtsTokenCount": 26},"modelVersion": "gemini-2.5-flash","responseId": "abc"}\r\n\r\n',
})

describe("aigw.sse parser", function()
  it("parses a simple event and dispatches on the blank line", function()
    local p = sse.parser()
    assert.same({}, p:feed("data: hello\n"))
    local evs = p:feed("\n")
    assert.same({ { data = "hello" } }, evs)
    assert.is_nil(evs[1].event)
  end)

  it("reads event names, ids and retry", function()
    local evs = parse_whole("event: message_start\nid: 7\nretry: 1500\ndata: {}\n\n")
    assert.same({ { event = "message_start", data = "{}", id = "7", retry = 1500 } }, evs)
  end)

  it("joins multi-line data with \\n", function()
    local evs = parse_whole("data: a\ndata: b\ndata:\ndata: c\n\n")
    assert.equal("a\nb\n\nc", evs[1].data)
  end)

  it("accepts LF, CRLF and CR line endings, mixed", function()
    for _, s in ipairs {
      "data: x\ndata: y\n\n", "data: x\r\ndata: y\r\n\r\n", "data: x\rdata: y\r\r",
      "data: x\r\ndata: y\n\r",
    } do
      assert.same({ { data = "x\ny" } }, parse_whole(s), s)
    end
  end)

  it("handles a CRLF split between chunks", function()
    local p = sse.parser()
    assert.same({}, p:feed("data: a\r"))
    assert.same({}, p:feed("\ndata: b\r"))
    assert.same({ { data = "a\nb" } }, p:feed("\n\r"))
    assert.same({}, p:feed("\n"))
    assert.same({ { data = "c" } }, p:feed("data: c\r\n\r\n"))
  end)

  it("a CR at the end of a chunk ends the line at once", function()
    local p = sse.parser()
    p:feed("data: a\r")
    assert.same({ { data = "a" } }, p:feed("\r"))
    -- and a following LF is not a second blank line
    assert.same({}, p:feed("\n"))
    assert.same({ { data = "b" } }, p:feed("data: b\n\n"))
  end)

  it("ignores comments", function()
    local evs = parse_whole(": this is a comment\n:\ndata: x\n: another\n\n: ping\n\n")
    assert.same({ { data = "x" } }, evs)
  end)

  it("keeps a value with no space after the colon and strips only one space", function()
    assert.equal("x", parse_whole("data:x\n\n")[1].data)
    assert.equal(" x", parse_whole("data:  x\n\n")[1].data)
    assert.equal("a:b: c", parse_whole("data: a:b: c\n\n")[1].data)
  end)

  it("treats a line with no colon as a field with an empty value", function()
    local evs = parse_whole("data\ndata\n\n")
    assert.same({ { data = "\n" } }, evs)
    assert.same({ { data = "" } }, parse_whole("data\n\n"))
    -- "event" alone sets an empty name
    assert.equal("", parse_whole("event\ndata: x\n\n")[1].event)
  end)

  it("does not dispatch an event with no data line", function()
    assert.same({}, parse_whole("event: ping\n\n"))
    assert.same({}, parse_whole("id: 3\n\n\n\n"))
    -- and the name does not leak into the next event
    assert.same({ { data = "x" } }, parse_whole("event: ping\n\ndata: x\n\n"))
  end)

  it("ignores unknown fields and invalid retry values", function()
    local evs = parse_whole("foo: bar\nretry: 12a\nretry: \ndata: x\n\n")
    assert.same({ { data = "x" } }, evs)
  end)

  it("keeps the last event id across events; an empty id clears it; ids with NUL are ignored", function()
    local evs = parse_whole("id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\0x\ndata: d\n\n")
    assert.equal("1", evs[1].id)
    assert.equal("1", evs[2].id)
    assert.is_nil(evs[3].id)
    assert.is_nil(evs[4].id)
  end)

  it("remembers retry on the parser even with no event", function()
    local p = sse.parser()
    assert.same({}, p:feed("retry: 3000\n\n"))
    assert.equal(3000, p.retry)
  end)

  it("drops a leading BOM, even split across chunks, but only at the start", function()
    assert.same({ { data = "x" } }, parse_whole("\239\187\191data: x\n\n"))
    local p = sse.parser()
    assert.same({}, p:feed("\239"))
    assert.same({}, p:feed("\187"))
    assert.same({}, p:feed("\191data: x\n"))
    assert.same({ { data = "x" } }, p:feed("\n"))
    -- a second BOM is part of the field name, which is then unknown
    assert.same({}, parse_whole("\239\187\191\239\187\191data: x\n\n"))
    -- a partial BOM-like start that is not a BOM is kept
    assert.same({ { data = "x" } }, parse_whole("data: x\n\n"))
    local evs = parse_split("\239\187data: x\n\n", 1)
    assert.same({}, evs) -- "\239\187data" is an unknown field
  end)

  it("discards an incomplete event at the end of the stream, and says so", function()
    local p = sse.parser()
    assert.same({ { data = "a" } }, p:feed("data: a\n\ndata: b\n"))
    local rest, incomplete = p:finish()
    assert.same({}, rest)
    assert.is_true(incomplete)
    local p2 = sse.parser()
    p2:feed("data: a\n\ndata: b")
    rest, incomplete = p2:finish()
    assert.same({}, rest)
    assert.is_true(incomplete)
    local p3 = sse.parser()
    p3:feed("data: a\n\n")
    rest, incomplete = p3:finish()
    assert.same({}, rest)
    assert.is_false(incomplete)
    local p4 = sse.parser()
    p4:feed("data: a\n\n: keep-alive")
    rest, incomplete = p4:finish()
    assert.same({}, rest)
    assert.is_false(incomplete)
  end)

  it("dispatches the incomplete event when asked to", function()
    local evs = parse_whole("data: a\n\ndata: [DONE]", { dispatch_incomplete = true })
    assert.same({ { data = "a" }, { data = "[DONE]" } }, evs)
    evs = parse_whole("event: x\ndata: b\n", { dispatch_incomplete = true })
    assert.same({ { event = "x", data = "b" } }, evs)
  end)

  it("can be reused after finish", function()
    local p = sse.parser()
    p:feed("id: 9\ndata: a")
    p:finish()
    p:feed("\239\187\191data: b\n")
    assert.same({ { data = "b" } }, p:feed("\n"))
  end)

  it("handles many events in one chunk and an empty chunk", function()
    local p = sse.parser()
    assert.same({}, p:feed(""))
    local evs = p:feed(("data: x\n\n"):rep(100))
    assert.equal(100, #evs)
  end)

  it("raises on misuse", function()
    local p = sse.parser()
    assert.has_error(function() p:feed(nil) end, "bad argument #1 to 'feed' (string expected, got nil)")
    assert.has_error(function() p:feed(1) end, "bad argument #1 to 'feed' (string expected, got number)")
    assert.has_error(function() sse.parser("x") end, "bad argument #1 to 'parser' (table expected, got string)")
  end)

  for _, sample in ipairs {
    { "OpenAI", OPENAI_STREAM, 6 }, { "Anthropic", ANTHROPIC_STREAM, 8 }, { "Gemini", GEMINI_STREAM, 2 },
  } do
    local name, stream, n = sample[1], sample[2], sample[3]
    it("parses a real-looking " .. name .. " stream the same whole, byte by byte, and in odd chunks", function()
      local whole = parse_whole(stream)
      assert.equal(n, #whole)
      assert.same(whole, parse_split(stream, 1))
      for _, size in ipairs { 2, 3, 7, 64, 1000 } do
        assert.same(whole, parse_split(stream, size), name .. " size " .. size)
      end
      for _, e in ipairs(whole) do
        if e.data ~= "[DONE]" then assert.is_table(json.decode(e.data)) end
      end
    end)
  end

  it("gives Anthropic event names and OpenAI's [DONE]", function()
    local a = parse_whole(ANTHROPIC_STREAM)
    assert.equal("message_start", a[1].event)
    assert.equal("message_stop", a[8].event)
    local o = parse_whole(OPENAI_STREAM)
    assert.equal("[DONE]", o[6].data)
    assert.equal("Hello", json.decode(o[2].data).choices[1].delta.content)
  end)

  it("is linear on one long line fed byte by byte", function()
    local payload = ("x"):rep(200000)
    local p = sse.parser()
    local s = "data: " .. payload .. "\n\n"
    local t0 = os.clock()
    local evs = {}
    for i = 1, #s do
      local got = p:feed(s:sub(i, i))
      for _, e in ipairs(got) do evs[#evs + 1] = e end
    end
    assert.equal(1, #evs)
    assert.equal(payload, evs[1].data)
    -- quadratic re-concatenation would take many seconds here
    assert.is_true(os.clock() - t0 < 5)
  end)
end)

-- What a parser holds between feeds, read from its state: the pieces of
-- the pending line and the data lines of the event in progress (every
-- entry of both tables, so a stale one counts too).
local function held(p)
  local bytes, pieces = 0, 0
  for _, t in ipairs({ p._parts, p._data or {} }) do
    for _, v in pairs(t) do
      bytes, pieces = bytes + #v, pieces + 1
    end
  end
  return bytes, pieces
end

-- Feeds s in pieces of `size`, checking after every feed that the parser
-- holds at most `limit` bytes in at most `most` pieces; returns the events,
-- the errors reported (with how many events of their feed came before) and
-- the largest amount held.
local function feed_bounded(p, s, size, limit, most)
  local evs, errs, peak = {}, {}, 0
  for i = 1, #s, size do
    local got, err, nbefore = p:feed(s:sub(i, i + size - 1))
    if err then errs[#errs + 1] = { err = err, before = nbefore, got = #got } end
    for _, e in ipairs(got) do evs[#evs + 1] = e end
    local bytes, pieces = held(p)
    assert(bytes <= limit, ("%d bytes held past a bound of %d (pieces of %d)"):format(bytes, limit, size))
    assert(pieces <= most, ("%d pieces held (pieces of %d)"):format(pieces, size))
    if bytes > peak then peak = bytes end
  end
  return evs, errs, peak
end

describe("aigw.sse parser bounds", function()
  local SPLITS = { 1, 2, 3, 7, 64, 1000, 4096, 1e9 }

  it("drops a line past max_line in any split, holding no more than the bound, and reads on", function()
    local line = "data: " .. ("x"):rep(20000)
    local s = "data: a\n\n" .. line .. "\n\ndata: b\n\n" .. line .. "\r\ndata: c\n\n" .. "data: d\n\n"
    for _, size in ipairs(SPLITS) do
      local p = sse.parser({ max_line = 4096 })
      -- log2 of the bound, and the piece being added
      local evs, errs = feed_bounded(p, s, size, 4096, 14)
      -- the event of an overlong line goes whole (its "data: c" too), the others are read
      assert.same({ { data = "a" }, { data = "b" }, { data = "d" } }, evs, "pieces of " .. size)
      -- one report per feed that dropped something
      assert.equal(size >= #s and 1 or 2, #errs, "pieces of " .. size)
      assert.equal("line too long (limit 4096 bytes)", errs[1].err)
      local _, incomplete = p:finish()
      assert.is_false(incomplete)
    end
  end)

  it("holds an endless line to max_line and reports it once", function()
    local p = sse.parser()   -- the defaults: 1 MiB
    assert.equal(1048576, p.max_line)
    local evs, errs, peak = feed_bounded(p, "data: " .. ("x"):rep(8 * 1048576), 65536, 1048576, 21)
    assert.same({}, evs)
    assert.equal(1, #errs)
    assert.equal("line too long (limit 1048576 bytes)", errs[1].err)
    assert.is_true(peak > 1048576 - 65536)    -- it was held up to the bound, not dropped early
    assert.same({ 0, 0 }, { held(p) })        -- and nothing of it since
    assert.is_true(p._skip_line)
    local more, err = p:feed("\n\ndata: after\n\n")
    assert.same({ { data = "after" } }, more)
    assert.is_nil(err)
  end)

  it("ends an overlong line at a CR split from its LF", function()
    local p = sse.parser({ max_line = 16 })
    local _, err = p:feed(("y"):rep(40))
    assert.truthy(err)
    assert.same({}, p:feed("\r"))
    assert.same({}, p:feed("\n"))                       -- the LF of that CRLF, not a blank line
    assert.same({ { data = "ok" } }, p:feed("\ndata: ok\n\n"))
  end)

  it("drops an event past max_event in any split, and reads the next", function()
    local lines = ("data: " .. ("z"):rep(90) .. "\n"):rep(200)   -- 19,400 bytes of data
    local s = "data: a\n\n" .. lines .. "\ndata: b\n\n"
    for _, size in ipairs(SPLITS) do
      local p = sse.parser({ max_event = 8192 })
      local evs, errs = feed_bounded(p, s, size, 8192 + 8192, 30)
      assert.same({ { data = "a" }, { data = "b" } }, evs, "pieces of " .. size)
      assert.equal(1, #errs)
      assert.equal("event too large (limit 8192 bytes)", errs[1].err)
    end
  end)

  it("holds an endless event to max_event", function()
    local p = sse.parser()
    local chunk = ("data: " .. ("e"):rep(1000) .. "\n"):rep(64)
    local errs = 0
    for _ = 1, 200 do   -- 12.8 MB of data lines, no blank line
      local evs, err = p:feed(chunk)
      assert.same({}, evs)
      if err then errs = errs + 1 end
      local bytes, pieces = held(p)
      assert.is_true(bytes <= 1048576, bytes)
      assert.is_true(pieces <= 21, pieces)
    end
    assert.equal(1, errs)
    assert.same({ { data = "next" } }, p:feed("\ndata: next\n\n"))
  end)

  it("holds millions of tiny data lines in a few pieces, to max_event", function()
    local p = sse.parser()
    local chunk = ("data:\n"):rep(10000)
    local errs = 0
    for _ = 1, 200 do   -- two million empty data lines in one event
      local _, err = p:feed(chunk)
      if err then errs = errs + 1 end
      local bytes, pieces = held(p)
      assert.is_true(bytes <= 1048576, bytes)
      assert.is_true(pieces <= 21, pieces)
    end
    assert.equal(1, errs)
    -- under the bound, they are all there
    local evs = parse_split(("data:x\n"):rep(50000) .. "\n", 333)
    assert.equal(("x\n"):rep(50000):sub(1, -2), evs[1].data)
  end)

  it("merges a line's tiny pieces: a long line fed byte by byte holds few of them", function()
    local p = sse.parser()
    local line = "data: " .. ("q"):rep(100000)
    local evs = feed_bounded(p, line .. "\n\n", 1, 100006, 19)
    assert.equal(("q"):rep(100000), evs[1].data)
  end)

  it("says how many events came before the dropped one", function()
    local p = sse.parser({ max_line = 10 })
    local evs, err, before = p:feed("data: 1\n\ndata: 2\n\ndata: 0123456789\n\ndata: 3\n\n")
    assert.same({ { data = "1" }, { data = "2" }, { data = "3" } }, evs)
    assert.equal("line too long (limit 10 bytes)", err)
    assert.equal(2, before)
  end)

  it("finish after a dropped event: incomplete when cut inside it, and a fresh parser", function()
    local p = sse.parser({ max_line = 8 })
    p:feed("data: 0123456789")
    local evs, incomplete = p:finish()
    assert.same({}, evs)
    assert.is_true(incomplete)
    assert.same({ { data = "x" } }, p:feed("data: x\n\n"))
  end)

  it("checks its options", function()
    assert.has_error(function() sse.parser({ max_line = 0 }) end,
                     "bad argument #1 to 'parser' (max_line must be a positive number)")
    assert.has_error(function() sse.parser({ max_event = "1m" }) end,
                     "bad argument #1 to 'parser' (max_event must be a positive number)")
  end)
end)

describe("aigw.sse writer", function()
  it("writes data and optional event names", function()
    assert.equal("data: hi\n\n", sse.event("hi"))
    assert.equal("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                 sse.event('{"type":"message_stop"}', "message_stop"))
    assert.equal("data: \n\n", sse.event(""))
  end)

  it("splits multi-line data into several data lines", function()
    assert.equal("data: a\ndata: b\ndata: \ndata: c\n\n", sse.event("a\nb\n\nc"))
    assert.equal("data: a\ndata: b\ndata: c\n\n", sse.event("a\r\nb\rc"))
    assert.equal("data: a\ndata: \n\n", sse.event("a\n"))
  end)

  it("round-trips through the parser", function()
    for _, d in ipairs { "x", "a\nb", "", "\n", " lead", "a\n\nb", "{\"k\":\"v\"}" } do
      assert.same({ { event = "n", data = d } }, parse_whole(sse.event(d, "n")), d)
    end
  end)

  it("DONE is OpenAI's terminator", function()
    assert.equal("data: [DONE]\n\n", sse.DONE)
    assert.same({ { data = "[DONE]" } }, parse_whole(sse.DONE))
  end)

  it("raises on misuse", function()
    assert.has_error(function() sse.event(nil) end, "bad argument #1 to 'event' (string expected, got nil)")
    assert.has_error(function() sse.event("x", 5) end, "bad argument #2 to 'event' (string expected, got number)")
    assert.has_error(function() sse.event("x", "a\nb") end,
                     "bad argument #2 to 'event' (event name must not contain a line break)")
  end)
end)

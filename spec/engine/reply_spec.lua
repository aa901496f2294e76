-- Golden-file specs for aigw.engine.reply: a recorded upstream stream fed in
-- awkward pieces, the client's side compared with a golden file.
--
-- spec/golden/reply/<upstream>_<case>.json (spec/support/golden.lua):
-- input = { upstream, model (when not the upstream's usual one), stream =
-- the upstream's stream bytes } (made with tests/integration/
-- mock_upstream.py's sse_events, anthropic_events and gemini_events, plus
-- two written after the providers' documentation: anthropic_text_tool,
-- gemini_text_tools); expected = { <client> = what that client gets once
-- decoded, one { event = name, data = JSON or "[DONE]" } per event }, and
-- for the OpenAI pass-through (expected.openai of an openai_ case) the
-- exact bytes. An Anthropic pass-through must give the input's bytes.
-- `created` is os.time() in the translators and Gemini's tool call ids are
-- random: both are pinned while a case runs.
--
-- AIGW_GOLDEN_WRITE=1 build/aigw test spec/engine/reply_spec.lua writes the
-- expected files again (review the diff).

local json = require "aigw.json"
local reply = require "aigw.engine.reply"
local h = require "aigw.test.helpers"

local golden = dofile(h.prefix .. "/spec/support/golden.lua")
local concat = table.concat

-- A golden case's upstream stream.
local function read(name)
  return golden.load("reply", name).input.stream
end

local MODEL = { openai = "gpt-4o-mini", anthropic = "claude-3-5-haiku-latest", gemini = "gemini-2.0-flash" }

local pinned = h.pinned

-- A client's stream decoded: every event's name and data.
local function events(s)
  local out = {}
  s = s:gsub("\r\n", "\n")
  assert.equal("\n\n", s:sub(-2), "the stream ends with a complete event")
  for ev in s:gmatch("(.-)\n\n") do
    if ev:sub(1, 1) == ":" then
      out[#out + 1] = { comment = ev }
      goto continue
    end
    local name, data = ev:match("^event: ([^\n]*)\n"), ev:match("data: ([^\n]*)$")
    assert.is_not_nil(data, "an event with data: " .. ev)
    local d = data == "[DONE]" and data or json.decode(data)
    assert.is_not_nil(d, "JSON data: " .. data)
    out[#out + 1] = { event = name, data = d }
    ::continue::
  end
  return out
end

local normalize = h.json_shape

local SSE_HEAD = "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"

-- Feeds data in pieces: "whole" (one call, eof on it), "bytes" (one byte
-- a call), or a number (pieces of that size, then an empty eof call).
local function feed(x, data, mode)
  local out = {}
  if mode == "whole" then
    out[1] = x:body(data, true)
  elseif mode == "bytes" then
    for i = 1, #data do out[#out + 1] = x:body(data:sub(i, i), i == #data) end
  else
    for i = 1, #data, mode do out[#out + 1] = x:body(data:sub(i, i + mode - 1), false) end
    out[#out + 1] = x:body("", true)
  end
  return concat(out)
end

-- Runs a stream through a fresh reply; returns the client's text and ctx.
local function run(upstream, client, data, mode, o)
  o = o or {}
  return pinned(function()
    local ctx = {}
    local x = reply.new(ctx, { client = client, upstream = upstream, stream = true,
                               model = o.model or MODEL[upstream],
                               include_usage = o.include_usage, injected_usage = o.injected_usage })
    local status, head = x:head(200, SSE_HEAD)
    assert.equal(200, status)
    assert.equal(SSE_HEAD, head)
    return feed(x, data, mode), ctx
  end)
end

local MODES = { "whole", "bytes", 7 }

local CASES = {
  "openai_text", "openai_tools", "openai_error",
  "anthropic_text", "anthropic_tools", "anthropic_text_tool", "anthropic_error",
  "gemini_text", "gemini_tools", "gemini_text_tools", "gemini_error",
}

describe("aigw.engine.reply golden streams", function()
  for _, name in ipairs(CASES) do
    local upstream = name:match("^[^_]+")
    for _, client in ipairs({ "openai", "anthropic" }) do
      local same = upstream == client
      local what = same and "passes through" or "translates"
      it(what .. " " .. name .. " for an " .. client .. " client, in any pieces", function()
        local case = golden.load("reply", name)
        assert.equal(upstream, case.input.upstream)
        local input = case.input.stream
        local o = { model = case.input.model }
        if same and client == "openai" then o.injected_usage = true end
        local outs = {}
        for i, mode in ipairs(MODES) do outs[i] = run(upstream, client, input, mode, o) end
        for i = 2, #outs do
          assert.same(normalize(events(outs[1])), normalize(events(outs[i])),
                      "mode " .. tostring(MODES[i]))
        end
        if same and client == "anthropic" then
          for i = 1, #outs do assert.equal(input, outs[i]) end
          return
        end
        if same then
          -- byte-exact pass-through, the injected usage left out
          if golden.writing then case.expected.openai = outs[1]; golden.save("reply", name, case) end
          for i = 1, #outs do assert.equal(case.expected.openai, outs[i]) end
          return
        end
        if golden.writing then case.expected[client] = events(outs[1]); golden.save("reply", name, case) end
        assert.same(normalize(case.expected[client]), normalize(events(outs[1])))
      end)
    end
  end
end)

describe("aigw.engine.reply", function()
  describe("OpenAI pass-through streams", function()
    local input
    setup(function() input = read("openai_text") end)

    it("leaves out the injected usage chunk and every \"usage\":null, comments kept", function()
      local out = run("openai", "openai", input, "bytes", { injected_usage = true })
      assert.is_nil(out:find('"usage"', 1, true))
      assert.is_nil(out:find('"choices":[]', 1, true))
      assert.truthy(out:find(": mock keep-alive comment\n\n", 1, true))
      assert.equal("data: [DONE]\n\n", out:sub(-14))
      -- every other byte as it came
      local expected = input:gsub(',"usage":null}', "}")
        :gsub('data: {[^\n]-"choices":%[%],"usage":{[^\n]*}}\n\n', "")
      assert.equal(expected, out)
    end)

    it("passes the stream untouched when the client asked for the usage chunk", function()
      for _, mode in ipairs(MODES) do
        local out, ctx = run("openai", "openai", input, mode, { include_usage = true })
        assert.equal(input, out)
        assert.same({ prompt_tokens = 9, completion_tokens = 5, total_tokens = 14 },
                    { prompt_tokens = ctx.usage.prompt_tokens, completion_tokens = ctx.usage.completion_tokens,
                      total_tokens = ctx.usage.total_tokens })
      end
    end)

    it("keeps CRLF framing and a \"usage\":null that is not last", function()
      local s = 'data: {"id":"a","usage":null,"choices":[{"index":0,"delta":{"content":"x"}}]}\r\n\r\n' ..
                'data: {"id":"a","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\r\n\r\n' ..
                "data: [DONE]\r\n\r\n"
      local out, ctx = run("openai", "openai", s, "bytes", { injected_usage = true })
      assert.equal('data: {"id":"a","usage":null,"choices":[{"index":0,"delta":{"content":"x"}}]}\r\n\r\n' ..
                   "data: [DONE]\r\n\r\n", out)
      assert.equal(2, ctx.usage.completion_tokens)
    end)

    it("hands on an unfinished last event at the end", function()
      local s = 'data: {"id":"a","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}\n\ndata: [DO'
      local out = run("openai", "openai", s, "whole", { injected_usage = true })
      assert.equal('data: {"id":"a","choices":[{"index":0,"delta":{"content":"x"}}]}\n\ndata: [DO', out)
    end)
  end)

  describe("usage and cost after a stream", function()
    local function usage_of(upstream, client, file, model)
      local _, ctx = run(upstream, client, read(file), 5, { model = model, injected_usage = upstream == client })
      return ctx
    end

    it("OpenAI: the usage chunk, priced as gpt-4o-mini", function()
      for _, client in ipairs({ "openai", "anthropic" }) do
        local ctx = usage_of("openai", client, "openai_text")
        assert.equal(9, ctx.usage.prompt_tokens)
        assert.equal(5, ctx.usage.completion_tokens)
        assert.equal(14, ctx.usage.total_tokens)
        assert.is_nil(ctx.usage.partial)
        assert.near((9 * 0.15 + 5 * 0.60) / 1e6, ctx.cost, 1e-15)
      end
    end)

    it("Anthropic: message_start's usage updated by message_delta's, cache reads priced", function()
      for _, client in ipairs({ "openai", "anthropic" }) do
        local ctx = usage_of("anthropic", client, "anthropic_text")
        assert.equal(7, ctx.usage.prompt_tokens)
        assert.equal(5, ctx.usage.completion_tokens)
        assert.near((7 * 0.80 + 5 * 4.00) / 1e6, ctx.cost, 1e-15)
        ctx = usage_of("anthropic", client, "anthropic_text_tool", "claude-sonnet-4-5-20250929")
        assert.equal(572, ctx.usage.prompt_tokens)      -- 472 + 100 read from the cache
        assert.equal(89, ctx.usage.completion_tokens)
        assert.equal(100, ctx.usage.cached_tokens)
        assert.near((472 * 3.00 + 100 * 0.30 + 89 * 15.00) / 1e6, ctx.cost, 1e-15)
      end
    end)

    it("Gemini: the last usageMetadata, thoughts counted as output", function()
      for _, client in ipairs({ "openai", "anthropic" }) do
        local ctx = usage_of("gemini", client, "gemini_text")
        assert.equal(7, ctx.usage.prompt_tokens)
        assert.equal(5, ctx.usage.completion_tokens)
        assert.near((7 * 0.10 + 5 * 0.40) / 1e6, ctx.cost, 1e-15)
        ctx = usage_of("gemini", client, "gemini_text_tools", "gemini-2.5-flash")
        assert.equal(31, ctx.usage.prompt_tokens)
        assert.equal(30, ctx.usage.completion_tokens)
        assert.near((31 * 0.30 + 30 * 2.50) / 1e6, ctx.cost, 1e-15)
      end
    end)

    it("leaves ctx.cost out for a model without a price", function()
      local ctx = usage_of("openai", "openai", "openai_text", "my-own-model")
      assert.equal(14, ctx.usage.total_tokens)
      assert.is_nil(ctx.cost)
    end)
  end)

  describe("a stream cut off (err)", function()
    -- the first n complete events of a stream
    local function head_events(s, n)
      local at = 1
      for _ = 1, n do
        local _, e = s:find("\r?\n\r?\n", at)
        at = e + 1
      end
      return s:sub(1, at - 1)
    end

    local function cut(upstream, client, file, n, o)
      return pinned(function()
        local ctx = {}
        local x = reply.new(ctx, { client = client, upstream = upstream, stream = true,
                                   model = MODEL[upstream], injected_usage = o and o.injected_usage })
        x:head(200, SSE_HEAD)
        local part = head_events(read(file), n)
        local pieces = {}
        for i = 1, #part do pieces[i] = x:body(part:sub(i, i), false) end
        local out = concat(pieces)
        local tail = x:body("", true, "upstream timed out")
        -- and nothing after it
        local after = x:body("data: {}\n\n", true)
        return out, tail, ctx, after
      end)
    end

    it("Anthropic upstream: the counts so far, partial, and the client's error event", function()
      local out, tail, ctx, after = cut("anthropic", "openai", "anthropic_text", 5)
      assert.equal(3, #events(out))         -- role, "Hel", "lo "
      assert.same({ { data = { error = { message = "upstream stream failed: upstream timed out",
                                          type = "server_error", code = json.null, param = json.null } } } },
                  events(tail))
      assert.equal("", after)
      assert.is_true(ctx.usage.partial)
      assert.equal(7, ctx.usage.prompt_tokens)
      assert.equal(1, ctx.usage.completion_tokens)
      assert.near((7 * 0.80 + 1 * 4.00) / 1e6, ctx.cost, 1e-15)

      out, tail, ctx = cut("anthropic", "anthropic", "anthropic_text", 5)
      assert.equal(head_events(read("anthropic_text"), 5), out)
      assert.same({ { event = "error", data = { type = "error", error = { type = "api_error",
                    message = "upstream stream failed: upstream timed out" } } } }, events(tail))
      assert.is_true(ctx.usage.partial)
    end)

    it("Gemini upstream to an Anthropic client: the events so far closed by event: error", function()
      local out, tail, ctx = cut("gemini", "anthropic", "gemini_text", 2)
      local evs = events(out)
      assert.equal("message_start", evs[1].event)
      assert.equal("lo ", evs[#evs].data.delta.text)
      assert.equal("error", events(tail)[1].event)
      assert.equal("api_error", events(tail)[1].data.error.type)
      assert.is_true(ctx.usage.partial)
      assert.equal(2, ctx.usage.completion_tokens)
    end)

    it("OpenAI upstream to an Anthropic client: nothing follows message_stop, even a failure", function()
      -- the finish and usage chunks close the client's stream (message_delta,
      -- message_stop) before [DONE]; the upstream fails after them
      local text = read("openai_text")
      local upto = text:find("data: [DONE]", 1, true)
      local out, tail = pinned(function()
        local x = reply.new({}, { client = "anthropic", upstream = "openai", stream = true,
                                     model = MODEL.openai })
        x:head(200, SSE_HEAD)
        local o = x:body(text:sub(1, upto - 1), false)
        return o, x:body("", true, "upstream timed out")
      end)
      local evs = events(out)
      assert.equal("message_stop", evs[#evs].event)
      assert.equal("", tail)
    end)

    it("OpenAI pass-through: the error event after complete events, usage partial", function()
      local file = "openai_text"
      local out, tail, ctx = cut("openai", "openai", file, 3, { injected_usage = true })
      assert.equal(head_events(read(file), 3):gsub(',"usage":null}', "}"), out)
      assert.same({ { data = { error = { message = "upstream stream failed: upstream timed out",
                                          type = "server_error", code = json.null, param = json.null } } } },
                  events(tail))
      assert.is_nil(ctx.usage)              -- no usage came before the cut
    end)

    it("after the usage chunk: the usage is kept and marked partial", function()
      local file = "openai_text"
      local _, tail, ctx = cut("openai", "openai", file, 9, { injected_usage = true })
      assert.truthy(tail:find('"error"', 1, true))
      assert.equal(14, ctx.usage.total_tokens)
      assert.is_true(ctx.usage.partial)
    end)

    it("cuts mid-event without a bad event: no error event follows half an event", function()
      pinned(function()
        local ctx = {}
        local x = reply.new(ctx, { client = "openai", upstream = "openai", stream = true,
                                   model = "gpt-4o-mini", injected_usage = true })
        x:head(200, SSE_HEAD)
        local s = read("openai_text")
        local first = head_events(s, 1)
        local out = x:body(s:sub(1, #first + 10), false)
        assert.equal(first:gsub(',"usage":null}', "}"), out)
        assert.equal("", x:body("", true, "upstream closed"))
      end)
    end)
  end)

  describe("provider error events inside a stream", function()
    local function with_tail(upstream, client, file, extra)
      local input = read(file) .. extra
      return (run(upstream, client, input, "bytes", { injected_usage = upstream == client }))
    end

    it("become the client's error event, and nothing after", function()
      local more = {
        openai = 'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"late"}}]}\n\ndata: [DONE]\n\n',
        anthropic = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n',
        gemini = 'data: {"candidates":[{"content":{"parts":[{"text":"late"}],"role":"model"},"finishReason":"STOP","index":0}]}\r\n\r\n',
      }
      local expect = {
        openai = { type = "server_error", atype = "api_error",
                   message = "The server had an error while processing your request (mock stream-error)" },
        anthropic = { type = "overloaded_error", atype = "overloaded_error", message = "Overloaded" },
        gemini = { atype = "api_error", message = "The model is overloaded. Please try again later." },
      }
      for upstream, extra in pairs(more) do
        for _, client in ipairs({ "openai", "anthropic" }) do
          if upstream ~= client then
            local evs = events(with_tail(upstream, client, upstream .. "_error", extra))
            local last = evs[#evs]
            local e = expect[upstream]
            for i = 1, #evs - 1 do
              assert.is_nil(evs[i].event == "error" or (type(evs[i].data) == "table" and evs[i].data.error) or nil)
              assert.is_nil(type(evs[i].data) == "table" and evs[i].data.delta
                            and evs[i].data.delta.text == "late" or nil)
            end
            if client == "openai" then
              assert.is_nil(last.event)
              assert.equal(e.message, last.data.error.message)
              if e.type then assert.equal(e.type, last.data.error.type) end
            else
              assert.equal("error", last.event)
              assert.same({ type = "error", error = { type = e.atype, message = e.message } }, last.data)
            end
          end
        end
      end
    end)

    it("pass through as they came between the same formats", function()
      local input = read("anthropic_error")
      assert.equal(input, (run("anthropic", "anthropic", input, "bytes")))
      input = read("openai_error")
      local out = run("openai", "openai", input, "bytes", { injected_usage = true })
      assert.equal(input:gsub(',"usage":null}', "}"), out)
    end)
  end)

  describe("answers that are not streams", function()
    it("passes a JSON answer to a stream request untouched", function()
      local body = '{"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
      for _, pair in ipairs({ { "openai", "openai" }, { "anthropic", "openai" }, { "gemini", "anthropic" } }) do
        local ctx = {}
        local x = reply.new(ctx, { client = pair[2], upstream = pair[1], stream = true, model = "gpt-4o-mini",
                                   injected_usage = true })
        local status, head = x:head(200, "Content-Type: application/json\r\n")
        assert.equal(200, status)
        assert.equal("Content-Type: application/json\r\n", head)
        local out = {}
        for i = 1, #body, 10 do out[#out + 1] = x:body(body:sub(i, i + 9), false) end
        out[#out + 1] = x:body("", true)
        assert.equal(body, concat(out))
      end
    end)

    it("passes an error status untouched, stream or not", function()
      local body = 'data: {"error":{"message":"no"}}\n\n'
      local ctx = {}
      local x = reply.new(ctx, { client = "anthropic", upstream = "gemini", stream = true, model = "m" })
      assert.equal(429, (x:head(429, SSE_HEAD)))
      assert.equal(body, x:body(body, true))
      assert.is_nil(ctx.usage)
    end)

    local function whole(upstream, body, pieces)
      local ctx = {}
      local x = reply.new(ctx, { client = upstream, upstream = upstream, stream = false,
                                 model = upstream == "openai" and "gpt-4o-mini" or "claude-3-5-haiku-latest" })
      x:head(200, "Content-Type: application/json\r\n")
      local out = {}
      for i = 1, #body, pieces do out[#out + 1] = x:body(body:sub(i, i + pieces - 1), i + pieces > #body) end
      assert.equal(body, concat(out))
      return ctx
    end

    it("reads an OpenAI body's top-level usage, not one inside the content or tool arguments", function()
      local body = '{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":' ..
        '{"role":"assistant","content":"the \\"usage\\": {\\"prompt_tokens\\": 999} key","tool_calls":' ..
        '[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\\"usage\\":{\\"prompt_tokens\\":77}}"}}]},' ..
        '"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33,' ..
        '"prompt_tokens_details":{"cached_tokens":4}},"system_fingerprint":"fp"}'
      for _, n in ipairs({ 1, 13, #body }) do
        local ctx = whole("openai", body, n)
        assert.equal(11, ctx.usage.prompt_tokens)
        assert.equal(22, ctx.usage.completion_tokens)
        assert.equal(4, ctx.usage.cached_tokens)
        assert.near((7 * 0.15 + 4 * 0.075 + 22 * 0.60) / 1e6, ctx.cost, 1e-15)
      end
    end)

    it("reads an Anthropic body's usage, not a tool input's \"usage\" object", function()
      local body = '{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-haiku-latest",' ..
        '"content":[{"type":"text","text":"usage: {}"},{"type":"tool_use","id":"toolu_1","name":"report",' ..
        '"input":{"usage":{"input_tokens":500,"output_tokens":600}}}],"stop_reason":"tool_use",' ..
        '"stop_sequence":null,"usage":{"input_tokens":12,"cache_read_input_tokens":8,"output_tokens":30}}'
      local ctx = whole("anthropic", body, 5)
      assert.equal(20, ctx.usage.prompt_tokens)
      assert.equal(30, ctx.usage.completion_tokens)
      assert.equal(8, ctx.usage.cached_tokens)
    end)

    it("finds no usage in a body without a top-level one", function()
      local ctx = whole("openai", '{"id":"x","choices":[{"message":{"content":"\\"usage\\":{}"}}]}', 4)
      assert.is_nil(ctx.usage)
    end)
  end)
end)

-- aigw.engine.protocols.anthropic: golden cases under spec/golden/anthropic/
-- (spec/support/golden.lua).
--
-- Each is {"input": {"fn": NAME, "args": [...], ...}, "expected": {...}}.
-- NAME is the translation, seen from OpenAI's side (FUNCTIONS: the contract's
-- function that does it; error_from_anthropic is Anthropic's error_parse
-- written by OpenAI's error_format, error_to_anthropic the other way round).
--   request_*     expected = { result, notes }
--   response_*, error_*  expected = { result }
--   stream_from_anthropic: input "events" [[name, data], ...]; expected = { result = every chunk
--                 returned, in order, usage = t:usage() }
--   stream_to_anthropic:   input "chunks" [...], "finish" (call t:finish() at the end);
--                 expected = { result = every [event_name, data] returned, in order }
-- Actual values are written with aigw.json and read back before comparing, so
-- the comparison is of what goes on the wire: [] and {} are told apart.
--
-- AIGW_GOLDEN_WRITE=1 build/aigw test spec/engine/protocols/anthropic_spec.lua fills in
-- the "expected" of the cases that have none from the current code; =all
-- rewrites every case's. Review what it wrote before committing it.

local h = require "aigw.test.helpers"
local json = require "aigw.json"
local A = require "aigw.engine.protocols.anthropic"
local hub = require "aigw.engine.protocols.openai"

local FUNCTIONS = {
  request_to_anthropic = "request_from_hub", request_from_anthropic = "request_to_hub",
  response_from_anthropic = "response_to_hub", response_to_anthropic = "response_from_hub",
}

local golden = dofile(h.prefix .. "/spec/support/golden.lua")

local CASES = {
  "req_plain", "req_system_multiturn", "req_system_blocks", "req_images", "req_tools",
  "req_tool_choice_none", "req_tool_choice_required", "req_tool_choice_named",
  "resp_text", "resp_tool_use", "resp_stop_max_tokens", "resp_stop_stop_sequence",
  "stream_from_text", "stream_from_text_usage", "stream_from_tools", "stream_from_error",
  "req_from_anthropic", "req_from_tool_choice_auto", "req_from_tool_choice_tool",
  "req_from_tool_choice_none",
  "resp_to_anthropic_text", "resp_to_anthropic_tools", "resp_to_anthropic_length",
  "resp_to_anthropic_tools_stop", "stream_to_tools_stop", "stream_to_tools_same_index",
  "req_from_tool_error",
  "error_from_anthropic", "error_from_anthropic_empty", "error_to_anthropic", "error_to_anthropic_5xx",
  "stream_to_text", "stream_to_tools", "stream_to_no_finish", "stream_to_error",
}

local function load_case(name)
  return golden.load("anthropic", name)
end

local function run(case)
  case = case.input
  -- The cases name the translation (Anthropic seen from OpenAI's side),
  -- each done by the contract's functions.
  local fn, args = case.fn, case.args
  if fn == "request_to_anthropic" or fn == "request_from_anthropic" then
    local result, notes = A[FUNCTIONS[fn]](args[1], args[2])
    return { result = result, notes = setmetatable(notes, json.array_mt) }
  elseif fn == "response_from_anthropic" or fn == "response_to_anthropic" then
    return { result = A[FUNCTIONS[fn]](args[1], args[2], args[3]) }
  elseif fn == "error_from_anthropic" then
    -- Anthropic's error body read, written in OpenAI's envelope
    return { result = hub.error_format(args[2], A.error_parse(args[2], args[1])) }
  elseif fn == "error_to_anthropic" then
    return { result = A.error_format(args[2], hub.error_parse(args[2], args[1])) }
  elseif fn == "stream_from_anthropic" then
    local t = A.stream_to_hub(args[1], args[2])
    local out = setmetatable({}, json.array_mt)
    for _, ev in ipairs(case.events) do
      for _, c in ipairs(t:event(ev[1], ev[2])) do out[#out + 1] = c end
    end
    return { result = out, usage = t:usage() or json.null }
  elseif fn == "stream_to_anthropic" then
    local t = A.stream_from_hub(args[1], args[2])
    local out = setmetatable({}, json.array_mt)
    for _, c in ipairs(case.chunks) do
      for _, ev in ipairs(t:chunk(c)) do out[#out + 1] = ev end
    end
    if case.finish then
      for _, ev in ipairs(t:finish()) do out[#out + 1] = ev end
    end
    return { result = out }
  end
  error("unknown fn " .. tostring(fn))
end

-- Empty arrays and empty objects as distinct markers, so that same() tells them apart.
local function normalize(v)
  if v == json.empty_array then return "<[]>" end
  if type(v) ~= "table" then return v end
  if next(v) == nil then
    return getmetatable(v) == json.array_mt and "<[]>" or "<{}>"
  end
  local out = {}
  for k, x in pairs(v) do
    -- Tool-call arguments are JSON text written from a Lua table: compare
    -- them decoded, since the order of an object's keys is not kept.
    if k == "arguments" and type(x) == "string" and json.decode(x) ~= nil then
      x = json.decode(x)
    end
    out[k] = normalize(x)
  end
  return out
end

-- The value as it would travel: encoded with aigw.json and decoded again.
local function wire(v)
  local s = assert(json.encode(v))
  return assert(json.decode(s)), s
end

if golden.writing then
  for _, name in ipairs(CASES) do
    local case = load_case(name)
    if case.expected ~= nil and golden.writing ~= "all" then goto continue end
    case.expected = wire(run(case))
    golden.save("anthropic", name, case)
    ::continue::
  end
end

describe("aigw.engine.protocols.anthropic golden files", function()
  for _, name in ipairs(CASES) do
    it(name, function()
      local case = load_case(name)
      assert.is_table(case.expected, name .. " has no expected")
      local actual = wire(run(case))
      assert.same(normalize(case.expected), normalize(actual))
    end)
  end
end)

describe("aigw.engine.protocols.anthropic on the wire", function()
  local function enc(v) return select(2, wire(v)) end

  it("keeps [] in the usage chunk's choices and in message_start's content", function()
    local t = A.stream_to_hub("m", { include_usage = true, created = 1 })
    t:event("message_start", { message = { id = "msg_1", usage = { input_tokens = 3 } } })
    t:event("message_delta", { delta = { stop_reason = "end_turn" }, usage = { output_tokens = 2 } })
    local out = t:event("message_stop", {})
    assert.equal(1, #out)
    assert.matches('"choices":%[%]', enc(out[1]))
    local s = A.stream_from_hub("m")
    local ev = s:chunk({ id = "x", choices = { { index = 0, delta = { content = "a" } } } })
    assert.equal("message_start", ev[1][1])
    assert.matches('"content":%[%]', enc(ev[1][2]))
  end)

  it("writes an empty tool input as {} and an empty answer's content as []", function()
    local r = A.request_from_hub({ model = "m", messages = {
      { role = "user", content = "x" },
      { role = "assistant", tool_calls = { { id = "c1", type = "function",
                                             ["function"] = { name = "f", arguments = "" } } } },
    } })
    assert.matches('"input":{}', enc(r))
    local a = A.response_from_hub({ id = "c", choices = { { message = { content = "" },
                                                                finish_reason = "stop" } } }, "m")
    assert.matches('"content":%[%]', enc(a))
  end)

  it("keeps tool-call arguments unchanged across both directions", function()
    local args = '{"n":123456789012345,"a":[],"o":{},"s":"x\\"y"}'
    local areq = A.request_from_hub({ model = "m", messages = {
      { role = "user", content = "x" },
      { role = "assistant", tool_calls = { { id = "c1", type = "function",
                                             ["function"] = { name = "f", arguments = args } } } },
    } })
    local back = A.request_to_hub(wire(areq))
    local got = back.messages[2].tool_calls[1]["function"].arguments
    assert.same(normalize(json.decode(args)), normalize(json.decode(got)))
    assert.matches("123456789012345", got, 1, true)
  end)

  it("sanitises tool ids the same way in calls and results", function()
    local r = A.request_from_hub({ model = "m", messages = {
      { role = "user", content = "x" },
      { role = "assistant", tool_calls = { { id = "a.b:c", type = "function",
                                             ["function"] = { name = "f", arguments = "{}" } } } },
      { role = "tool", tool_call_id = "a.b:c", content = "ok" },
    } })
    local use = r.messages[2].content[1]
    local res = r.messages[3].content[1]
    assert.equal("a_b_c", use.id)
    assert.equal(use.id, res.tool_use_id)
    assert.matches("^[a-zA-Z0-9_-]+$", use.id)
  end)

  it("notes only the dropped fields that would change the answer", function()
    local _, notes = A.request_from_hub({ model = "m", n = 1, logprobs = false, seed = 3,
                                              messages = { { role = "user", content = "x" } } })
    assert.same({ "field seed dropped" }, notes)
  end)

  it("gives a missing or null tool id a valid one", function()
    assert.equal("toolu_", A.sanitize_id(json.null))
    assert.equal("toolu_", A.sanitize_id(nil))
    assert.equal("12", A.sanitize_id(12))
    assert.equal("call_abc-1", A.sanitize_id("call_abc-1"))
  end)

  it("uses opts.default_max_tokens, then its own default, when max_tokens is absent", function()
    local req = { model = "m", messages = { { role = "user", content = "x" } } }
    assert.equal(77, A.request_from_hub(req, { default_max_tokens = 77 }).max_tokens)
    assert.equal(A.DEFAULT_MAX_TOKENS, A.request_from_hub(req).max_tokens)
  end)

  it("ends a stream cut short with finish(), once", function()
    local s = A.stream_from_hub("m")
    s:chunk({ id = "x", choices = { { index = 0, delta = { content = "a" } } } })
    local ev = s:finish()
    assert.same({ "content_block_stop", "message_delta", "message_stop" },
                { ev[1][1], ev[2][1], ev[3][1] })
    assert.equal("end_turn", ev[2][2].delta.stop_reason)
    assert.same({}, s:finish())
  end)

  describe("a stream's state is bounded", function()
    local function count(t)
      local n = 0
      for _ in pairs(t) do n = n + 1 end
      return n
    end

    it("from Anthropic: at most MAX_BLOCKS content blocks, indices kept as numbers, kinds as ours", function()
      local t = A.stream_to_hub("m")
      for i = 1, A.MAX_BLOCKS - 1 do
        local out, err = t:event("content_block_start", { index = i, content_block = { type = ("k"):rep(500) } })
        assert.same({}, out)
        assert.is_nil(err)
      end
      -- an index that is no number counts as 0, once
      assert.is_nil(select(2, t:event("content_block_start", { index = ("s"):rep(500), content_block = { type = "text" } })))
      assert.is_nil(select(2, t:event("content_block_start", { index = { 1 }, content_block = { type = "text" } })))
      local _, err = t:event("content_block_start", { index = A.MAX_BLOCKS + 1, content_block = { type = "text" } })
      assert.same({ status = 502, type = "api_error", bound = true,
                    message = "too many content blocks (limit 1024)" }, err)
      assert.equal(A.MAX_BLOCKS, count(t.blocks))
      for k, b in pairs(t.blocks) do
        assert.equal("number", type(k))
        assert.truthy(b.kind == "other" or b.kind == "text")
      end
      -- a block already open is no new one
      assert.is_nil(select(2, t:event("content_block_start", { index = 3, content_block = { type = "text" } })))
    end)

    it("from Anthropic: a message id or model past MAX_ID bytes is not put in every chunk", function()
      local t = A.stream_to_hub(nil)
      local long = ("i"):rep(A.MAX_ID + 1)
      local c = t:event("message_start", { message = { id = long, model = long } })[1]
      assert.is_nil(c.id)
      assert.is_nil(c.model)
      t = A.stream_to_hub(nil)
      local ok = ("i"):rep(A.MAX_ID)
      c = t:event("message_start", { message = { id = ok, model = ok } })[1]
      assert.equal(ok, c.id)
      assert.equal(ok, c.model)
    end)

    it("to Anthropic: at most MAX_TOOL_CALLS tool calls; long ids and NaN indices are not kept", function()
      local t = A.stream_from_hub("m")
      local function call(index, id)
        return { id = "c", choices = { { index = 0, delta = { tool_calls = { { index = index, id = id,
                 ["function"] = { name = "f", arguments = "{}" } } } } } } }
      end
      -- a NaN index is the call's position; an id past MAX_ID is taken as absent
      local evs, err = t:chunk(call("nan", ("x"):rep(A.MAX_ID + 1)))
      assert.is_nil(err)
      assert.equal("toolu_0", evs[2][2].content_block.id)
      assert.is_nil(t.tools[0].id)
      for i = 1, A.MAX_TOOL_CALLS - 1 do assert.is_nil(select(2, t:chunk(call(i, "call_" .. i)))) end
      assert.equal(A.MAX_TOOL_CALLS, count(t.tools))
      err = select(2, t:chunk(call(A.MAX_TOOL_CALLS, "call_last")))
      assert.equal("too many tool calls (limit 1024)", err)
      assert.equal(A.MAX_TOOL_CALLS, count(t.tools))
      -- a piece for a call already open is still fine
      assert.is_nil(select(2, t:chunk(call(5, "call_5"))))
    end)
  end)

  it("writes a provider's tool call id and name only as strings", function()
    local tr = require "aigw.engine.protocols.anthropic"
    local out = tr.response_to_hub({ id = "msg_1", content = {
      { type = "tool_use", id = {}, name = 42, input = {} },
      { type = "tool_use", id = "toolu_ok", name = "f", input = {} } } }, "m")
    local calls = out.choices[1].message.tool_calls
    assert.equal("string", type(calls[1].id))
    assert.equal("", calls[1]["function"].name)
    assert.equal("toolu_ok", calls[2].id)
    local st = tr.stream_to_hub("m")
    local chunks = st:event("content_block_start", { type = "content_block_start", index = 0,
                              content_block = { type = "tool_use", id = {}, name = { 1 }, input = {} } })
    local found
    for _, c in ipairs(chunks or {}) do
      local tc = c.choices and c.choices[1] and c.choices[1].delta.tool_calls
      if tc then found = tc[1] end
    end
    assert.is_not_nil(found)
    assert.equal("string", type(found.id))
    assert.equal("", found["function"].name)
  end)
end)

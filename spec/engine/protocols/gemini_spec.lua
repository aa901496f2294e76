-- Golden-file specs for aigw.engine.protocols.gemini.
--
-- Each case is spec/golden/gemini/<name>.json (spec/support/golden.lua):
-- {"input": {"kind": ..., "data": ..., "opts"?, "model"?, "status"?},
-- "expected": ...}, data being the hub request, the Gemini response, its
-- stream's events or its error body, as kind says. Outputs are encoded with
-- aigw.json and decoded again before comparing, and every empty array must
-- be [] on both sides. AIGW_GOLDEN_WRITE=1 rewrites the expected values
-- that changed.

local h = require "aigw.test.helpers"
local json = require "aigw.json"
local gemini = require "aigw.engine.protocols.gemini"
local util = require "luassert.util"

local golden = dofile(h.prefix .. "/spec/support/golden.lua")

-- Empty arrays become the string "[]" so that [] and {} differ. Tool-call
-- arguments are compared decoded: key order in JSON text is not kept.
local function normalize(v)
  if type(v) ~= "table" then return v end
  if next(v) == nil and getmetatable(v) == json.array_mt then return "[]" end
  local out = {}
  for k, x in pairs(v) do
    if k == "arguments" and type(x) == "string" then
      out[k] = { decoded = normalize(assert(json.decode(x))) }
    else
      out[k] = normalize(x)
    end
  end
  return out
end

local function ids()
  local n = 0
  return function() n = n + 1; return "call_" .. n end
end

local function run(case)
  case = case.input
  local opts = { id = "chatcmpl-test", created = 1700000000, make_id = ids() }
  if case.opts then for k, v in pairs(case.opts) do opts[k] = v end end
  if case.kind == "request" then
    -- { path, body }: the body, and the path the provider's :path gives
    -- for the request's model
    local body, err = gemini.request_from_hub(case.data, case.opts)
    if not body then return { error = err.message } end
    local model = (case.opts and case.opts.model) or case.data.model
    return { path = gemini.path(nil, "chat/completions", model, case.data.stream == true), body = body }
  elseif case.kind == "response" then
    local out, err = gemini.response_to_hub(case.data, case.model, opts)
    return out or { error = err }
  elseif case.kind == "stream" then
    local st = gemini.stream_to_hub(case.model, opts)
    local chunks, errors = setmetatable({}, json.array_mt), {}
    for _, ev in ipairs(case.data) do
      -- each event goes through its SSE text, as the upstream sends it
      local data = assert(json.decode(assert(json.encode(ev))))
      local list, err = st:event(nil, data)
      for _, c in ipairs(list) do chunks[#chunks + 1] = c end
      if err then errors[#errors + 1] = err end
    end
    for _, c in ipairs(st:finish()) do chunks[#chunks + 1] = c end
    local out = { chunks = chunks, usage = st:usage() }
    if #errors > 0 then out.errors = errors end
    return out
  elseif case.kind == "error" then
    return gemini.error_parse(case.status, case.data)
  end
  error("unknown kind " .. tostring(case.kind))
end

describe("aigw.engine.protocols.gemini golden files", function()
  for _, name in ipairs(golden.names("gemini")) do
    it(name, function()
      local case = golden.load("gemini", name)
      local got = assert(json.decode(assert(json.encode(run(case)))))
      if golden.writing and not (case.expected ~= nil and util.deepcompare(normalize(case.expected), normalize(got))) then
        case.expected = got
        golden.save("gemini", name, case)
      end
      assert.same(normalize(case.expected), normalize(got))
    end)
  end
end)

describe("aigw.engine.protocols.gemini", function()
  it("maps a made-up tool-call id back to its name on the next turn", function()
    local resp = assert(gemini.response_to_hub({
      candidates = { { content = { parts = { { functionCall = { name = "lookup", args = { q = "x" } } } } },
                       finishReason = "STOP" } },
    }, "gemini-2.0-flash"))
    local msg = resp.choices[1].message
    local id = msg.tool_calls[1].id
    assert.matches("^call_[a-zA-Z0-9_-]+$", id)
    assert.equal("tool_calls", resp.choices[1].finish_reason)
    assert.equal('{"q":"x"}', msg.tool_calls[1]["function"].arguments)
    -- the client sends the conversation back, through JSON
    local req = assert(json.decode(assert(json.encode({
      model = "gemini-2.0-flash",
      messages = { { role = "user", content = "find x" }, msg,
                   { role = "tool", tool_call_id = id, content = "found" } },
    }))))
    local body = assert(gemini.request_from_hub(req))
    local c = body.contents
    assert.equal("model", c[2].role)
    assert.same({ name = "lookup", args = { q = "x" } }, c[2].parts[1].functionCall)
    assert.equal("user", c[3].role)
    assert.same({ name = "lookup", response = { content = "found" } }, c[3].parts[1].functionResponse)
  end)

  it("makes ids that differ", function()
    local a, b = gemini.new_tool_call_id(), gemini.new_tool_call_id()
    assert.matches("^call_[a-zA-Z0-9]+$", a)
    assert.not_equal(a, b)
  end)

  it("rejects a tool result whose id no tool call had", function()
    local out, err = gemini.request_from_hub({ model = "m", messages = {
      { role = "tool", tool_call_id = "call_nope", content = "x" } } })
    assert.is_nil(out)
    assert.matches("call_nope", err.message)
  end)

  it("keeps [] in arguments and writes choices = [] in the usage chunk", function()
    local st = gemini.stream_to_hub("m", { include_usage = true, id = "x", created = 1 })
    st:event(nil, { candidates = { { content = { parts = { { functionCall = { name = "f", args = { a = json.decode("[]") } } } } },
                                finishReason = "STOP" } } })
    local list = st:finish()
    local text = assert(json.encode(list[#list]))
    assert.matches('"choices":%[%]', text)
    local body = assert(gemini.request_from_hub(assert(json.decode(
      '{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\\"a\\":[]}"}}]}]}'))))
    assert.matches('"a":%[%]', assert(json.encode(body)))
  end)

  it("takes usage from the last usageMetadata, not a sum", function()
    local st = gemini.stream_to_hub("m", {})
    st:event(nil, { usageMetadata = { promptTokenCount = 5, candidatesTokenCount = 1, totalTokenCount = 6 } })
    st:event(nil, { usageMetadata = { promptTokenCount = 5, candidatesTokenCount = 4, totalTokenCount = 9 } })
    assert.same({ prompt_tokens = 5, completion_tokens = 4, total_tokens = 9 }, st:usage())
  end)

  it("reads retryDelay with fractions as whole seconds, rounded up", function()
    local e = gemini.error_parse(429, { error = { code = 429, message = "slow down",
      details = { { ["@type"] = "type.googleapis.com/google.rpc.RetryInfo", retryDelay = "1.2s" } } } })
    assert.equal(2, e.retry_after)
    assert.equal("rate_limit_error", e.type)
    assert.is_nil(gemini.error_parse(500, nil).retry_after)
  end)

  it("holds at most MAX_CHOICES candidates per stream; a NaN index is the candidate's position", function()
    local st = gemini.stream_to_hub("m", { id = "x", created = 1 })
    local out, err = st:event(nil, { candidates = { { index = "nan", content = { parts = { { text = "a" } } } } } })
    assert.is_nil(err)
    assert.equal(0, out[1].choices[1].index)
    for i = 1, gemini.MAX_CHOICES - 1 do
      assert.is_nil(select(2, st:event(nil, { candidates = { { index = i, content = { parts = { { text = "a" } } } } } })))
    end
    err = select(2, st:event(nil, { candidates = { { index = gemini.MAX_CHOICES, content = { parts = { { text = "a" } } } } } }))
    assert.equal("too many candidates (limit 128)", err.message)
    assert.is_true(err.bound)
    local n = 0
    for _ in pairs(st.choices) do n = n + 1 end
    assert.equal(gemini.MAX_CHOICES, n)
    assert.same({}, st:finish())   -- failed: the caller sends the error instead
  end)

  it("does not repeat a responseId past MAX_ID bytes in every chunk", function()
    local long = ("r"):rep(gemini.MAX_ID + 1)
    local st = gemini.stream_to_hub("m", {})
    local out = st:event(nil, { responseId = long, candidates = { { content = { parts = { { text = "a" } } } } } })
    assert.matches("^chatcmpl%-%w+$", out[1].id)
    assert.is_true(#out[1].id < 64)
    st = gemini.stream_to_hub("m", {})
    out = st:event(nil, { responseId = "abc", candidates = { { content = { parts = { { text = "a" } } } } } })
    assert.equal("chatcmpl-abc", out[1].id)
  end)
end)

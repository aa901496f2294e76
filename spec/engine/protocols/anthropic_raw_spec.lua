-- The fast path of aigw.engine.protocols.anthropic (request_from_hub_raw,
-- response_to_hub_raw): on every text it takes, what it writes must decode
-- to what the general translator writes (request_from_hub /
-- response_to_hub, then aigw.json.encode); on every text it does not
-- take, it answers nil, and the general translator runs. Fixed cases for
-- the edges (escapes, unicode, unusual but valid shapes, malformed text),
-- the golden cases, and many random ones built as text.

local h = require "aigw.test.helpers"
local json = require "aigw.json"
local A = require "aigw.engine.protocols.anthropic"

local golden = dofile(h.prefix .. "/spec/support/golden.lua")

local sort, concat, format = table.sort, table.concat, string.format

-- A canonical text for a decoded value: keys sorted, [] and {} told apart,
-- numbers with all their digits.
local function canon(v)
  local tv = type(v)
  if tv == "table" then
    local n = #v
    if getmetatable(v) == json.array_mt or n > 0 then
      local out = {}
      for i = 1, n do out[i] = canon(v[i]) end
      return "[" .. concat(out, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    sort(keys)
    local out = {}
    for i, k in ipairs(keys) do out[i] = format("%q:%s", k, canon(v[k])) end
    return "{" .. concat(out, ",") .. "}"
  elseif tv == "number" then
    return format("%.17g", v)
  elseif tv == "string" then
    return format("%q", v)
  elseif v == json.null then
    return "null"
  end
  return tostring(v)
end

local OPTS = { default_max_tokens = 1024 }

-- The general translator's request for text, as the gateway makes it.
local function general_request(text)
  local j = json.decode(text)
  if type(j) ~= "table" then return nil end
  j.model = "claude-up"
  local ok, out = pcall(A.request_from_hub, j, OPTS)
  if not ok or not out then return nil end
  return json.decode(json.encode(out))
end

-- Checks text; returns whether the fast path took it.
local function check_request(text)
  local fast = A.request_from_hub_raw(text, "claude-up", OPTS)
  if fast == nil then return false end
  local decoded = json.decode(fast)
  assert(decoded, "the fast path wrote invalid JSON for " .. text .. ": " .. fast)
  local want = general_request(text)
  assert(want, "the fast path took a text the general translator refuses: " .. text)
  assert.are.equal(canon(want), canon(decoded), "request " .. text)
  return true
end

local CREATED = 1700000000

local function general_response(text)
  local d = json.decode(text)
  if type(d) ~= "table" then return nil end
  local ok, hub = pcall(A.response_to_hub, d, "claude-up", { created = CREATED })
  if not ok or not hub then return nil end
  return json.decode(json.encode(hub)), A.answer_usage(d)
end

local function check_response(text)
  local fast, usage = A.response_to_hub_raw(text, "claude-up", CREATED)
  if fast == nil then return false end
  local decoded = json.decode(fast)
  assert(decoded, "the fast path wrote invalid JSON for " .. text .. ": " .. fast)
  local want, want_usage = general_response(text)
  assert(want, "the fast path took an answer the general translator refuses: " .. text)
  assert.are.equal(canon(want), canon(decoded), "answer " .. text)
  assert.are.equal(canon(want_usage), canon(usage), "usage of " .. text)
  return true
end

---------------------------------------------------------------------------
-- random texts

-- A small deterministic generator (the runs are the same every time).
local seed = 12345
local function rnd(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n + 1
end
local function pick(list) return list[rnd(#list)] end

local WS = { "", "", "", " ", "\n  ", "\t" }
local function ws() return pick(WS) end

local STRINGS = {
  '""', '"Hello"', '"line\\nbreak"', '"quote \\" and backslash \\\\"', '"caf\\u00e9"',
  '"\\ud83d\\ude00 emoji"', '"\\uD83D\\uDE00"', '"raw café ☃"', '"slash \\/ tab \\t"',
  '"\\u0000 nul"', '"\\\\u00e9 not an escape"', '"\\b\\f\\r"', '"{\\"json\\":[1,2]}"',
  '"' .. string.rep("long ", 200) .. '"',
}
local NUMBERS = { "0", "1", "0.2", "-0", "256", "1.0", "0.123456789012345678", "4096", "1e2", "2E-1" }
local SCALARS = { "null", "true", "false", "1", '"x"', "[]", "{}", '{"a":[1,{"b":null}]}' }

local function object(members)
  local out = {}
  for i, m in ipairs(members) do out[i] = ws() .. '"' .. m[1] .. '"' .. ws() .. ":" .. ws() .. m[2] end
  return "{" .. concat(out, ",") .. ws() .. "}"
end

local function shuffle(t)
  for i = #t, 2, -1 do
    local j = rnd(i)
    t[i], t[j] = t[j], t[i]
  end
  return t
end

local ROLES = { "system", "developer", "user", "user", "assistant", "assistant" }

local function random_message()
  local m = { { "role", '"' .. pick(ROLES) .. '"' }, { "content", pick(STRINGS) } }
  if rnd(6) == 1 then m[#m + 1] = { "name", '"bob"' } end
  if rnd(10) == 1 then m[#m + 1] = { "refusal", "null" } end
  return object(shuffle(m))
end

local function random_request()
  local members = { { "model", '"gpt-4o-mini"' } }
  local msgs = {}
  for i = 1, rnd(6) - 1 do msgs[i] = random_message() end
  if rnd(20) > 1 then members[#members + 1] = { "messages", "[" .. concat(msgs, "," .. ws()) .. "]" } end
  local optional = {
    { "temperature", function() return rnd(4) == 1 and "null" or pick(NUMBERS) end },
    { "top_p", function() return rnd(4) == 1 and "null" or pick(NUMBERS) end },
    { "max_tokens", function() return rnd(4) == 1 and "null" or pick(NUMBERS) end },
    { "max_completion_tokens", function() return rnd(3) == 1 and "null" or pick(NUMBERS) end },
    { "stream", function() return pick({ "true", "false", "null", '"yes"' }) end },
    { "stop", function() return pick({ '"END"', '["a","\\n"]', "[]", "null", "3" }) end },
    { "user", function() return pick({ '"tenant-42/user-1337"', "null", "7", '"\\u00e9"' }) end },
    { "metadata", function() return pick({ '"m"', "null", "5" }) end },
    { "n", function() return pick({ "1", "2", "null" }) end },
    { "seed", function() return pick(NUMBERS) end },
    { "stream_options", function() return pick({ '{"include_usage":true}', "null" }) end },
    { "tools", function() return "null" end },
    { "tool_choice", function() return "null" end },
    { "x_unknown", function() return pick(SCALARS) end },
  }
  for _, o in ipairs(optional) do
    if rnd(3) == 1 then members[#members + 1] = { o[1], o[2]() } end
  end
  if rnd(8) == 1 then members[#members + 1] = { "temperature", pick(NUMBERS) } end -- a repeated member
  return ws() .. object(shuffle(members)) .. ws()
end

local STOPS = { '"end_turn"', '"max_tokens"', '"stop_sequence"', '"tool_use"', '"refusal"',
                '"pause_turn"', '"other"', "null" }

local function random_answer()
  local blocks = {}
  for i = 1, rnd(4) - 1 do
    if rnd(5) == 1 then
      blocks[i] = object({ { "type", '"thinking"' }, { "thinking", pick(STRINGS) }, { "signature", '"s"' } })
    else
      local b = { { "type", '"text"' }, { "text", pick(STRINGS) } }
      if rnd(5) == 1 then b[3] = { "citations", "null" } end
      blocks[i] = object(shuffle(b))
    end
  end
  local members = { { "type", '"message"' }, { "role", '"assistant"' },
                    { "content", "[" .. concat(blocks, ",") .. "]" } }
  if rnd(8) > 1 then members[#members + 1] = { "id", '"msg_01AbC"' } end
  if rnd(8) > 1 then members[#members + 1] = { "model", '"claude-3-5-haiku-20241022"' } end
  if rnd(8) > 1 then members[#members + 1] = { "stop_reason", pick(STOPS) } end
  if rnd(2) == 1 then members[#members + 1] = { "stop_sequence", "null" } end
  if rnd(8) > 1 then
    local u = {}
    for _, k in ipairs({ "input_tokens", "output_tokens", "cache_read_input_tokens",
                         "cache_creation_input_tokens", "service_tier" }) do
      if rnd(4) > 1 then
        u[#u + 1] = { k, k == "service_tier" and '"standard"' or pick({ "0", "12", "231", "null", "999999999999" }) }
      end
    end
    members[#members + 1] = { "usage", object(shuffle(u)) }
  end
  return ws() .. object(shuffle(members)) .. ws()
end

---------------------------------------------------------------------------

describe("anthropic fast path: requests", function()
  it("takes the common shape and writes what the general translator writes", function()
    local text = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},' ..
                 '{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},' ..
                 '{"role":"user","content":"Why?"}],"temperature":0.2,"max_tokens":256,"top_p":1,' ..
                 '"n":1,"user":"tenant-42","metadata":{"trace":"t"}}'
    assert.is_true(check_request(text))
  end)

  it("merges turns of one role and writes several system messages as blocks", function()
    assert.is_true(check_request('{"messages":[{"role":"system","content":"a"},{"role":"developer",' ..
      '"content":"b"},{"role":"user","content":"c"},{"role":"assistant","content":""},' ..
      '{"role":"user","content":"d\\u00e9"},{"role":"user","content":""}]}'))
    assert.is_true(check_request('{"messages":[],"max_completion_tokens":9,"max_tokens":5}'))
    assert.is_true(check_request('{"model":"m"}'))
  end)

  it("keeps escapes as received", function()
    local text = '{"messages":[{"role":"user","content":"\\ud83d\\ude00 \\"q\\" \\\\ \\/ \\u0000"}]}'
    assert.is_true(check_request(text))
    local out = A.request_from_hub_raw(text, "claude-up", OPTS)
    assert.truthy(out:find('"\\ud83d\\ude00 \\"q\\" \\\\ \\/ \\u0000"', 1, true))
  end)

  it("leaves every other shape to the general translator", function()
    local general = {
      '{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}',
      '{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}',
      '{"messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}',
      '{"messages":[{"role":"user","content":"x"}],"parallel_tool_calls":false}',
      '{"messages":[{"role":"assistant","content":null,"tool_calls":[]}]}',
      '{"messages":[{"role":"tool","tool_call_id":"c1","content":"42"}]}',
      '{"messages":[{"role":"user","content":null}]}',
      '{"messages":[{"role":"user"}]}',
      '{"messages":[{"role":"us\\u0065r","content":"x"}]}',
      '{"messages":[{"r\\u006fle":"user","content":"x"}]}',
      '{"mess\\u0061ges":[{"role":"user","content":"x"}]}',
      '{"messages":[{"role":"critic","content":"x"}]}',
      '{"messages":["x"]}',
      '{"messages":{"role":"user"}}',
      '{"messages":null}',
      '{"messages":[],"temperature":"0.2"}',
      '{"messages":[],"max_tokens":1e3}',
      '{"messages":[],"max_tokens":true}',
      '{"messages":[],"stop":{"a":1}}',
      '{"messages":[],"metadata":{"user":"u"}}',
      '{"messages":[],"user":null,"metadata":{"user":"u"}}',
      '[{"messages":[]}]',
      -- lua-cjson refuses lone surrogates: so does the fast path
      '{"messages":[{"role":"user","content":"\\ud800"}]}',
      '{"messages":[],"x":"\\udc00\\ud800"}',
      -- malformed
      '', '{', '{"messages":[}', '{"messages":[]} x', '{"messages":["\\q"]}',
      '{"messages":[{"role":"user","content":"a\1b"}]}',
    }
    for _, text in ipairs(general) do
      assert.is_nil(A.request_from_hub_raw(text, "claude-up", OPTS), text)
    end
  end)

  it("agrees with the golden request cases it takes", function()
    local taken = 0
    for _, name in ipairs({ "req_plain", "req_system_multiturn", "req_system_blocks", "req_images",
                            "req_tools", "req_tool_choice_none" }) do
      local case = golden.load("anthropic", name)
      local req, opts = case.input.args[1], case.input.args[2]
      local fast = A.request_from_hub_raw(json.encode(req), req.model, opts)
      if fast then
        taken = taken + 1
        assert.are.equal(canon(case.expected.result), canon(json.decode(fast)), name)
      end
    end
    assert.is_true(taken >= 1)
  end)

  it("agrees with the general translator on random requests", function()
    local taken = 0
    for _ = 1, 3000 do
      if check_request(random_request()) then taken = taken + 1 end
    end
    assert.is_true(taken > 1000, "taken: " .. taken)
  end)
end)

describe("anthropic fast path: answers", function()
  it("takes an answer of text blocks", function()
    local text = '{"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022",' ..
                 '"content":[{"type":"text","text":"A \\"proxy\\"."},{"type":"text","text":" \\ud83d\\ude00"}],' ..
                 '"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":231,' ..
                 '"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"output_tokens":41}}'
    assert.is_true(check_response(text))
    local out, usage = A.response_to_hub_raw(text, "claude-up", CREATED)
    assert.truthy(out:find('"content":"A \\"proxy\\". \\ud83d\\ude00"', 1, true))
    assert.same({ prompt_tokens = 236, completion_tokens = 41, total_tokens = 277, cached_tokens = 5,
                  cache_creation_tokens = 0 }, usage)
  end)

  it("leaves every other answer to the general translator", function()
    local general = {
      '{"content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use"}',
      '{"content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t","name":"f","input":{}}]}',
      '{"content":[{"type":"text"}]}',
      '{"content":[{"type":"text","text":null}]}',
      '{"content":[{"text":"a"}]}',
      '{"content":["a"]}',
      '{"content":"a"}',
      '{"id":"m"}',
      '{"id":5,"content":[]}',
      '{"content":[],"stop_reason":"end\\u005fturn"}',
      '{"content":[],"stop_reason":3}',
      '{"content":[],"usage":[]}',
      '{"content":[],"usage":{"input_tokens":"5"}}',
      '{"content":[],"usage":{"input_tokens":5.0}}',
      '{"content":[],"usage":{"input_tokens":-5}}',
      '{"content":[],"usage":{"input_tokens":1234567890123}}',
      '{"content":[],"usage":{"input\\u005ftokens":5}}',
      '{"c\\u006fntent":[]}',
      '{"content":[{"type":"text","text":"\\ud83d"}]}',
      '[]', '"x"', '', '{"content":[]', '{"content":[]}}', 'null',
    }
    for _, text in ipairs(general) do
      assert.is_nil((A.response_to_hub_raw(text, "claude-up", CREATED)), text)
    end
  end)

  it("agrees with the golden answer cases it takes", function()
    local taken = 0
    for _, name in ipairs({ "resp_text", "resp_tool_use", "resp_stop_max_tokens", "resp_stop_stop_sequence" }) do
      local case = golden.load("anthropic", name)
      local args = case.input.args
      local created = type(args[3]) == "table" and args[3].created or CREATED
      local fast = A.response_to_hub_raw(json.encode(args[1]), args[2], created)
      if fast then
        taken = taken + 1
        local want = case.expected.result
        if want.created == nil then want.created = created end
        assert.are.equal(canon(want), canon(json.decode(fast)), name)
      end
    end
    assert.is_true(taken >= 2)
  end)

  it("agrees with the general translator on random answers", function()
    local taken = 0
    for _ = 1, 3000 do
      if check_response(random_answer()) then taken = taken + 1 end
    end
    assert.is_true(taken > 1000, "taken: " .. taken)
  end)
end)

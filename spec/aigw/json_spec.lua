-- aigw.json: safe round trips for LLM wire formats on lua-cjson 2.1.0.

local json = require "aigw.json"

-- decode then encode
local function rt(s)
  local v, err = json.decode(s)
  assert.is_nil(err)
  return (assert(json.encode(v)))
end

describe("aigw.json", function()
  describe("decode", function()
    it("decodes objects, arrays, strings, numbers, booleans and null", function()
      local v = json.decode('{"a":[1,2.5,"x",true,false,null],"b":{"c":"d"}}')
      assert.are.same({ 1, 2.5, "x", true, false, json.null }, v.a)
      assert.are.equal("d", v.b.c)
      assert.are.equal(json.null, v.a[6])
    end)

    it("decodes scalars at the top level", function()
      assert.are.equal(42, json.decode("42"))
      assert.are.equal("s", json.decode('"s"'))
      assert.are.equal(true, json.decode("true"))
      assert.are.equal(json.null, json.decode("null"))
    end)

    it("returns nil and an error for invalid JSON, never raising", function()
      local bad = { "", " ", "{", "[1,2", "[1,2,]", '{"a":1,}', '{"a"}', "nul", "NaN", "Infinity",
                    "0x10", "+1", "01", "'x'", '{"a":"unterminated}', "1 2", '{[]:1}', "[[]", "[]]",
                    '"\\ud800"', '"\\x"', "1 \0 []", '"a"\0[]', "[1]\0", '{"a":"\0"}' }
      for _, s in ipairs(bad) do
        local v, err
        assert.has_no.errors(function() v, err = json.decode(s) end)
        assert.is_nil(v, s)
        assert.is_string(err, s)
      end
    end)

    it("reports errors at the input's own offsets", function()
      local _, err = json.decode('{"tools":[],"x":}')
      assert.matches("character 17", err, 1, true)
    end)

    it("returns nil and an error for a value that is not a string", function()
      for _, v in ipairs({ 1, true, {}, json.null }) do
        local r, err = json.decode(v)
        assert.is_nil(r)
        assert.matches("expected a string", err, 1, true)
      end
      local r, err = json.decode(nil)
      assert.is_nil(r)
      assert.matches("got nil", err, 1, true)
    end)

    it("marks arrays that were empty with array_mt and leaves other tables alone", function()
      local v = json.decode('{"tools":[],"o":{},"a":[1]}')
      assert.are.equal(json.array_mt, getmetatable(v.tools))
      assert.is_nil(next(v.tools))
      assert.is_nil(getmetatable(v.o))
      assert.is_nil(getmetatable(v.a))
      assert.are.equal(json.array_mt, getmetatable(json.decode("[]")))
    end)

    it("gives each empty array its own table, which plugins may fill", function()
      local v = json.decode('{"a":[],"b":[]}')
      assert.are_not.equal(v.a, v.b)
      v.a[1] = "x"
      assert.are.equal('["x"]', json.encode(v.a))
      assert.are.equal("[]", json.encode(v.b))
    end)

    it("keeps [] inside strings as text", function()
      local v = json.decode('{"s":"[]","t":"a [ ] b","u":"x\\"[]\\"","w":"\\\\","z":[]}')
      assert.are.equal("[]", v.s)
      assert.are.equal("a [ ] b", v.t)
      assert.are.equal('x"[]"', v.u)
      assert.are.equal("\\", v.w)
      assert.are.equal(json.array_mt, getmetatable(v.z))
    end)

    it("decodes unicode escapes, surrogate pairs included", function()
      assert.are.equal("é", json.decode('"\\u00e9"'))
      assert.are.equal("\240\159\152\128", json.decode('"\\ud83d\\ude00"'))
      assert.are.equal("[]", json.decode('"\\u005b\\u005d"'))
      assert.are.equal("\0", json.decode('"\\u0000"'))
    end)

    it("reads numbers at full double precision", function()
      assert.are.equal(123456789012345, json.decode("123456789012345"))
      assert.are.equal(2 ^ 53, json.decode("9007199254740992"))
      assert.are.equal(0.1 + 0.2, json.decode("0.30000000000000004"))
      assert.are.equal(1 / -math.huge, json.decode("-0"))
      assert.are.equal(-math.huge, 1 / json.decode("-0"))
    end)
  end)

  describe("encode", function()
    it("encodes tables, strings, numbers, booleans and null", function()
      assert.are.equal('[1,"a",true,null]', json.encode({ 1, "a", true, json.null }))
      assert.are.equal('{"a":{"b":false}}', json.encode({ a = { b = false } }))
      assert.are.equal('"x"', json.encode("x"))
      assert.are.equal("true", json.encode(true))
      assert.are.equal("null", json.encode(json.null))
      assert.are.equal("{}", json.encode({}))
    end)

    it("returns exactly one value on success", function()
      assert.are.equal(1, select("#", json.encode({ a = 1 })))
      assert.are.equal(1, select("#", json.encode({ a = json.empty_array, n = 2 ^ 60 })))
      assert.are.equal(1, select("#", json.encode("x")))
      assert.are.equal(1, select("#", json.decode("[]")))
    end)

    it("returns nil and an error for values JSON cannot hold, never raising", function()
      local bad = { function() end, { f = print }, 0 / 0, math.huge, -math.huge, { x = 1 / 0 },
                    { [1] = 1, [100] = 2 }, coroutine.create(print) }
      for i, v in ipairs(bad) do
        local s, err
        assert.has_no.errors(function() s, err = json.encode(v) end)
        assert.is_nil(s, i)
        assert.is_string(err, i)
      end
    end)

    it("reports a cycle as too deep, without hanging", function()
      local t = {}
      t.a, t.b, t.c = t, t, t
      local s, err = json.encode(t)
      assert.is_nil(s)
      assert.matches("nesting", err, 1, true)
    end)

    it("writes empty_array and empty tables carrying array_mt as []", function()
      assert.are.equal("[]", json.encode(json.empty_array))
      assert.are.equal("[]", json.encode(setmetatable({}, json.array_mt)))
      assert.are.equal('{"a":[]}', json.encode({ a = json.empty_array }))
      assert.are.equal('[[],[[]]]', json.encode({ json.empty_array, { setmetatable({}, json.array_mt) } }))
      assert.are.equal('[1,2]', json.encode(setmetatable({ 1, 2 }, json.array_mt)))
    end)

    it("leaves the caller's tables as they were", function()
      local inner = setmetatable({}, json.array_mt)
      local t = { a = inner, b = json.empty_array, n = 123456789012345, m = { 0.1 + 0.2 } }
      assert.is_string(json.encode(t))
      assert.are.equal(inner, t.a)
      assert.are.equal(json.empty_array, t.b)
      assert.are.equal(123456789012345, t.n)
      assert.are.equal(0.1 + 0.2, t.m[1])
    end)

    it("leaves the caller's tables as they were when encoding fails", function()
      local t = { a = json.empty_array, n = 123456789012345, f = print }
      assert.is_nil(json.encode(t))
      assert.are.equal(json.empty_array, t.a)
      assert.are.equal(123456789012345, t.n)
    end)

    it("writes a table shared by two parents the same in both places", function()
      local shared = { n = 2 ^ 50, e = json.empty_array }
      local s = json.encode({ shared, shared })
      local _, arrays = s:gsub("%[%]", "")
      local _, numbers = s:gsub("1125899906842624", "")
      assert.are.equal(2, arrays)
      assert.are.equal(2, numbers)
      assert.are.equal(2 ^ 50, shared.n)
      assert.are.equal(json.empty_array, shared.e)
    end)

    it("makes empty_array read-only and gives it a name", function()
      assert.has_error(function() json.empty_array.x = 1 end)
      assert.are.equal("aigw.json.empty_array", tostring(json.empty_array))
    end)

    it("writes integers beyond 14 digits in full", function()
      assert.are.equal("123456789012345", json.encode(123456789012345))
      assert.are.equal('{"seed":123456789012345}', json.encode({ seed = 123456789012345 }))
      assert.are.equal("9007199254740992", json.encode(2 ^ 53))
      assert.are.equal("-9007199254740991", json.encode(-(2 ^ 53 - 1)))
      assert.are.equal("100000000000000", json.encode(1e14))
      assert.are.equal("99999999999999", json.encode(99999999999999))
      assert.are.equal("[1234567890123456]", json.encode({ 1234567890123456 }))
    end)

    it("writes other numbers exactly, with the fewest digits that read back", function()
      assert.are.equal("0.1", json.encode(0.1))
      assert.are.equal("0.30000000000000004", json.encode(0.1 + 0.2))
      assert.are.equal("3.141592653589793", json.encode(math.pi))
      assert.are.equal("1e+300", json.encode(1e300))
      assert.are.equal(5e-324, json.decode(json.encode(5e-324)))
      assert.are.equal("-0", json.encode(-0.0))
      for _, x in ipairs({ 0.1 + 0.2, math.pi, 1 / 3, 2 / 3, 1e-7 / 3, 123456.789012345678, 2 ^ 60, -2 ^ 70 }) do
        assert.are.equal(x, json.decode(json.encode(x)))
        assert.are.equal(x, json.decode(json.encode({ x }))[1])
      end
    end)
  end)

  describe("round trips", function()
    it("reads back every number it writes, for numbers of 1 to 17 digits", function()
      math.randomseed(7)
      for digits = 1, 17 do
        for _ = 1, 400 do
          local x = tonumber(string.format("%." .. digits .. "g", math.random() * 10 ^ math.random(-12, 22)))
          if math.random() < 0.5 then x = -x end
          assert.are.equal(x, json.decode(json.encode({ x }))[1])
        end
      end
    end)

    it("keeps empty arrays as arrays and empty objects as objects", function()
      assert.are.equal('{"tools":[]}', rt('{"tools":[]}'))
      assert.are.equal('{"tools":{}}', rt('{"tools":{}}'))
      assert.are.equal("[]", rt("[]"))
      assert.are.equal("[]", rt(" [ \t\r\n] "))
      assert.are.equal("[[],[[]],{}]", rt("[[],[ [ ] ],{}]"))
    end)

    it("keeps empty arrays in nested structures and next to tricky strings", function()
      local body = [=[{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text",
        "text":"print([]) and \"[]\" and \\\"] [\u005b\u005d"}]},{"role":"assistant","content":"",
        "tool_calls":[]}],"tools":[],"stop":[],"metadata":{},"n":[[[]]]}]=]
      local v = json.decode(body)
      assert.are.equal('print([]) and "[]" and \\"] [[]', v.messages[1].content[1].text)
      local back = json.decode(json.encode(v))
      assert.are.same(v, back)
      for _, a in ipairs({ back.tools, back.stop, back.messages[2].tool_calls, back.n[1][1] }) do
        assert.are.equal(json.array_mt, getmetatable(a))
      end
      assert.is_nil(getmetatable(back.metadata))
      local s = json.encode(v)
      assert.matches('"tools":[]', s, 1, true)
      assert.matches('"stop":[]', s, 1, true)
      assert.matches('"tool_calls":[]', s, 1, true)
      assert.matches('"metadata":{}', s, 1, true)
      assert.matches('"n":[[[]]]', s, 1, true)
    end)

    it("keeps many empty arrays", function()
      local parts = {}
      for i = 1, 500 do parts[i] = '"k' .. i .. '":[]' end
      local v = json.decode("{" .. table.concat(parts, ",") .. "}")
      for i = 1, 500 do assert.are.equal(json.array_mt, getmetatable(v["k" .. i])) end
      local s = json.encode(v)
      local _, count = s:gsub("%[%]", "")
      assert.are.equal(500, count)
    end)

    it("keeps big integers and precise floats", function()
      assert.are.equal('{"seed":123456789012345}', rt('{"seed":123456789012345}'))
      assert.are.equal("[9007199254740992]", rt("[9007199254740992]"))
      assert.are.equal("[0.30000000000000004]", rt("[0.30000000000000004]"))
      assert.are.equal("[1,0.5,-2,1e-05]", rt("[1.0,0.5,-2,1e-5]"))
      assert.are.equal("[-0]", rt("[-0]"))
    end)

    it("keeps strings byte for byte, unicode included", function()
      local s = "héllo \240\159\152\128 \"q\" \\ \n\t\0 </script> [] {}"
      assert.are.equal(s, json.decode(json.encode({ s = s })).s)
      assert.are.equal(s, json.decode(json.encode(s)))
    end)

    it("never lets client data pass for the internal marker", function()
      -- Whatever a client writes stays what it wrote.
      for _, s in ipairs({ '["aigw"]', '{"a":["aigw00000000000000000000000000000000"]}', '"aigw[]"' }) do
        assert.are.equal(s, rt(s))
      end
    end)

    it("survives an OpenAI chat body, an Anthropic body and a Gemini body", function()
      local bodies = {
        [=[{"model":"gpt-4o","seed":123456789012345,"temperature":0.7,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"hi"}],"tools":[],"stream":true,"stream_options":{"include_usage":true}}]=],
        [=[{"model":"claude-3-5-haiku-latest","max_tokens":1024,"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":[]}]}],"tools":[{"name":"f","input_schema":{"type":"object","properties":{},"required":[]}}]}]=],
        [=[{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":100,"stopSequences":[]},"safetySettings":[]}]=],
      }
      for _, b in ipairs(bodies) do
        local s = rt(b)
        assert.are.same(json.decode(b), json.decode(s))
        local _, e1 = b:gsub("%[%]", "")
        local _, e2 = s:gsub("%[%]", "")
        local _, o1 = b:gsub("{}", "")
        local _, o2 = s:gsub("{}", "")
        assert.are.equal(e1, e2)
        assert.are.equal(o1, o2)
      end
      local s = rt(bodies[1])
      assert.matches('"seed":123456789012345', s, 1, true)
      assert.matches('"temperature":0.7', s, 1, true)
    end)
  end)
end)

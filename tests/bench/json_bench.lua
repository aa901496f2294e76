-- JSON micro-benchmark: aigw.json against plain cjson (lua-cjson 2.1.0), on
-- chat request bodies of about 2 KB and 100 KB, decode + encode per round.
--
--   luajit tests/bench/json_bench.lua            # about 10 s
--   SECONDS_PER_CASE=0.3 luajit tests/bench/json_bench.lua
--
-- Each body comes in two forms: "plain" has nothing for aigw.json to fix; "fix"
-- adds empty arrays ("tools":[], "stop":[]) and a 15-digit seed, which plain
-- cjson would write back as {} and 1.2345678901234e+14. The last body is
-- an embeddings response (1536 floats). Prints one markdown
-- table: microseconds per operation (best of 3 runs), and aigw.json's time as a
-- multiple of cjson's.

local dir = (arg and arg[0] or ""):match("^(.*)/tests/bench/[^/]*$") or "."
package.path = dir .. "/lua/?.lua;" .. dir .. "/lua/?/init.lua;" .. package.path
package.cpath = package.cpath .. ";/usr/lib/x86_64-linux-gnu/lua/5.1/?.so"

local cjson = require("cjson.safe").new()
local json = require "aigw.json"

local SECONDS = tonumber(os.getenv("SECONDS_PER_CASE")) or 0.5

-- Deterministic filler text.
local seed = 12345
local words = { "the", "gateway", "routes", "requests", "to", "providers", "with", "keys",
                "and", "limits", "stream", "tokens", "model", "answer", "quickly", "because" }
local function text(n)
  local out = {}
  for i = 1, n do
    seed = (seed * 1103515245 + 12345) % 2147483648
    out[i] = words[seed % #words + 1]
  end
  return table.concat(out, " ")
end

local TOOL = {
  type = "function",
  ["function"] = {
    name = "get_weather",
    description = "Get the current weather for a city.",
    parameters = { type = "object", properties = { city = { type = "string", description = "City name" },
                   unit = { type = "string", enum = { "c", "f" } } }, required = { "city" } },
  },
}

local function body(messages, words_per_message, fix)
  local msgs = { { role = "system", content = text(40) } }
  for i = 1, messages do
    msgs[#msgs + 1] = { role = i % 2 == 1 and "user" or "assistant", content = text(words_per_message) }
  end
  local b = { model = "gpt-4o-mini", messages = msgs, temperature = 0.7, top_p = 1, max_tokens = 512,
              stream = true, stream_options = { include_usage = true }, tools = { TOOL, TOOL },
              user = "user-1234", n = 1, presence_penalty = 0, frequency_penalty = 0 }
  local s = assert(cjson.encode(b))
  if fix then
    s = s:sub(1, -2) .. ',"seed":123456789012345,"stop":[],"logit_bias":{},"tool_choice":"auto",'
        .. '"metadata":{"tags":[]},"parallel_tool_calls":true,"extra":[]}'
  end
  return s
end

-- An embeddings response: 1536 floats with 8-10 significant digits, the
-- worst case for the number check (each float is formatted once with %.14g).
local function embedding()
  local v = {}
  for i = 1, 1536 do
    seed = (seed * 1103515245 + 12345) % 2147483648
    v[i] = string.format("%.9g", (seed / 2147483648 - 0.5) / 10)
  end
  return '{"object":"list","data":[{"object":"embedding","index":0,"embedding":['
         .. table.concat(v, ",") .. ']}],"model":"text-embedding-3-small",'
         .. '"usage":{"prompt_tokens":8,"total_tokens":8}}'
end

local cases = {
  { name = "2 KB plain", s = body(6, 40, false) },
  { name = "2 KB fix", s = body(6, 40, true) },
  { name = "100 KB plain", s = body(190, 120, false) },
  { name = "100 KB fix", s = body(190, 120, true) },
  { name = "embedding 1536", s = embedding() },
}

local function time(f, arg1)
  local best = math.huge
  for _ = 1, 3 do
    local n, t0 = 0, os.clock()
    local elapsed
    repeat
      for _ = 1, 20 do f(arg1) end
      n = n + 20
      elapsed = os.clock() - t0
    until elapsed >= SECONDS / 3
    best = math.min(best, elapsed / n)
  end
  return best * 1e6
end

local function cj_rt(s) return cjson.encode(cjson.decode(s)) end
local function aj_rt(s) return json.encode(json.decode(s)) end

print(string.format("%s, %s", jit and jit.version or _VERSION, "lua-cjson " .. (require("cjson")._VERSION or "?")))
print()
print("| body | bytes | cjson decode | aigw.json decode | cjson encode | aigw.json encode"
      .. " | cjson round trip | aigw.json round trip | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for _, c in ipairs(cases) do
  -- Sanity: aigw.json keeps what cjson loses.
  local back = aj_rt(c.s)
  assert(#back > 0 and json.decode(back))
  if c.name:find("fix") then
    assert(back:find('"stop":[]', 1, true) and back:find('"seed":123456789012345', 1, true))
  end
  local cv, av = cjson.decode(c.s), json.decode(c.s)
  local d1 = time(cjson.decode, c.s)
  local d2 = time(json.decode, c.s)
  local e1 = time(cjson.encode, cv)
  local e2 = time(json.encode, av)
  local r1 = time(cj_rt, c.s)
  local r2 = time(aj_rt, c.s)
  print(string.format("| %s | %d | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %.2f |",
                      c.name, #c.s, d1, d2, e1, e2, r1, r2, r2 / r1))
end

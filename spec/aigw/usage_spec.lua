-- aigw.usage: normalised usage, stream accumulation and cost.

local usage = require "aigw.usage"
local sse = require "aigw.sse"
local json = require "aigw.json"

local function close(expected, got)
  assert.is_number(got)
  assert.is_true(math.abs(expected - got) < 1e-12, ("expected %.12f, got %.12f"):format(expected, got))
end

-- events of an SSE text, fed to a usage stream byte by byte
local function accumulate(kind, text, step)
  local acc = usage.stream(kind)
  local p = sse.parser()
  step = step or #text
  for i = 1, #text, step do
    for _, e in ipairs(p:feed(text:sub(i, i + step - 1))) do acc:event(e.data) end
  end
  return acc
end

describe("aigw.usage", function()
  describe("from_openai", function()
    it("reads prompt, completion, total, cached and reasoning tokens", function()
      local u = json.decode([[{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,
        "prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},
        "completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0,
          "accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}]])
      assert.same({ prompt_tokens = 2006, completion_tokens = 300, total_tokens = 2306,
                    cached_tokens = 1920, reasoning_tokens = 192 }, usage.from_openai(u))
    end)

    it("works without details, with null details, and computes a missing total", function()
      assert.same({ prompt_tokens = 5, completion_tokens = 7, total_tokens = 12 },
                  usage.from_openai { prompt_tokens = 5, completion_tokens = 7 })
      local u = json.decode('{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5,"prompt_tokens_details":null}')
      assert.same({ prompt_tokens = 5, completion_tokens = 0, total_tokens = 5 }, usage.from_openai(u))
      -- embeddings report no completion tokens
      assert.same({ prompt_tokens = 8, completion_tokens = 0, total_tokens = 8 },
                  usage.from_openai { prompt_tokens = 8, total_tokens = 8 })
    end)

    it("reads the Responses API's names too", function()
      assert.same({ prompt_tokens = 10, completion_tokens = 4, total_tokens = 14, cached_tokens = 2, reasoning_tokens = 1 },
        usage.from_openai { input_tokens = 10, output_tokens = 4, total_tokens = 14,
                            input_tokens_details = { cached_tokens = 2 }, output_tokens_details = { reasoning_tokens = 1 } })
    end)

    it("gives nil for nil and raises on other types", function()
      assert.is_nil(usage.from_openai(nil))
      assert.has_error(function() usage.from_openai("x") end,
                       "bad argument #1 to 'from_openai' (table expected, got string)")
    end)
  end)

  describe("from_anthropic", function()
    it("counts cache reads and writes into prompt_tokens", function()
      local u = { input_tokens = 50, cache_read_input_tokens = 1000, cache_creation_input_tokens = 200, output_tokens = 80 }
      assert.same({ prompt_tokens = 1250, completion_tokens = 80, total_tokens = 1330,
                    cached_tokens = 1000, cache_creation_tokens = 200 }, usage.from_anthropic(u))
    end)

    it("handles missing and null cache fields", function()
      assert.same({ prompt_tokens = 25, completion_tokens = 15, total_tokens = 40 },
                  usage.from_anthropic { input_tokens = 25, output_tokens = 15 })
      local u = json.decode('{"input_tokens":3,"output_tokens":1,"cache_read_input_tokens":null}')
      assert.same({ prompt_tokens = 3, completion_tokens = 1, total_tokens = 4 }, usage.from_anthropic(u))
      assert.is_nil(usage.from_anthropic(nil))
      assert.has_error(function() usage.from_anthropic(1) end,
                       "bad argument #1 to 'from_anthropic' (table expected, got number)")
    end)
  end)

  describe("from_gemini", function()
    it("reads usageMetadata, thinking tokens counted as completion", function()
      local m = { promptTokenCount = 1200, candidatesTokenCount = 40, thoughtsTokenCount = 300,
                  totalTokenCount = 1540, cachedContentTokenCount = 1024 }
      assert.same({ prompt_tokens = 1200, completion_tokens = 340, total_tokens = 1540,
                    cached_tokens = 1024, reasoning_tokens = 300 }, usage.from_gemini(m))
    end)

    it("handles a prompt-only count and tool-use prompt tokens", function()
      assert.same({ prompt_tokens = 8, completion_tokens = 0, total_tokens = 8 },
                  usage.from_gemini { promptTokenCount = 8, totalTokenCount = 8 })
      assert.same({ prompt_tokens = 13, completion_tokens = 2, total_tokens = 15 },
                  usage.from_gemini { promptTokenCount = 10, toolUsePromptTokenCount = 3, candidatesTokenCount = 2 })
      assert.is_nil(usage.from_gemini(nil))
      assert.has_error(function() usage.from_gemini(true) end,
                       "bad argument #1 to 'from_gemini' (table expected, got boolean)")
    end)
  end)

  describe("stream", function()
    it("OpenAI: takes the usage chunk, ignores usage: null", function()
      local text = table.concat {
        'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}\n\n',
        'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}\n\n',
        'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
        'data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}\n\n',
        'data: [DONE]\n\n',
      }
      local want = { prompt_tokens = 19, completion_tokens = 10, total_tokens = 29, cached_tokens = 0, reasoning_tokens = 0 }
      assert.same(want, accumulate("openai", text):result())
      assert.same(want, accumulate("openai", text, 1):result())
      assert.equal(29, accumulate("openai", text):raw().total_tokens)
    end)

    it("OpenAI: no usage chunk gives nil", function()
      local acc = usage.stream("openai")
      acc:event { choices = {}, usage = json.null }
      acc:event("[DONE]")
      assert.is_nil(acc:result())
      assert.is_nil(acc:raw())
    end)

    local ANTHROPIC = table.concat {
      'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":2}}}\n\n',
      'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
      'event: ping\ndata: {"type": "ping"}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}\n\n',
      'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":89}}\n\n',
      'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    }

    it("Anthropic: message_delta totals replace message_start's, never added", function()
      local want = { prompt_tokens = 2520, completion_tokens = 89, total_tokens = 2609,
                     cached_tokens = 2048, cache_creation_tokens = 0 }
      assert.same(want, accumulate("anthropic", ANTHROPIC):result())
      assert.same(want, accumulate("anthropic", ANTHROPIC, 1):result())
      local raw = accumulate("anthropic", ANTHROPIC):raw()
      assert.equal(472, raw.input_tokens)
      assert.equal(89, raw.output_tokens)
    end)

    it("Anthropic: a stream naming endless made-up counts keeps a bounded object", function()
      local acc = usage.stream("anthropic")
      for e = 1, 50 do
        local u = { input_tokens = 3, output_tokens = e }
        for i = 1, 200 do u["made_up_" .. e .. "_" .. i] = i end
        acc:event { type = "message_delta", usage = u }
      end
      local n = 0
      for _ in pairs(acc:raw()) do n = n + 1 end
      assert.is_true(n <= 64 + 4, n .. " fields kept")   -- 64 others, and the four it reads
      assert.equal(3, acc:raw().input_tokens)
      assert.equal(50, acc:raw().output_tokens)   -- known fields still follow the stream
    end)

    it("Anthropic: input tokens that come only in message_delta", function()
      local acc = usage.stream("anthropic")
      acc:event { type = "message_start", message = { usage = { input_tokens = 0, output_tokens = 0 } } }
      acc:event { type = "content_block_delta", index = 0, delta = { type = "text_delta", text = "x" } }
      acc:event { type = "message_delta", delta = { stop_reason = "end_turn" },
                  usage = { input_tokens = 31, output_tokens = 12 } }
      assert.same({ prompt_tokens = 31, completion_tokens = 12, total_tokens = 43 }, acc:result())
      -- and with no message_start at all
      acc = usage.stream("anthropic")
      acc:event { type = "message_delta", usage = { input_tokens = 5, output_tokens = 6 } }
      assert.same({ prompt_tokens = 5, completion_tokens = 6, total_tokens = 11 }, acc:result())
    end)

    it("Anthropic: message_delta's cumulative cache counts replace message_start's", function()
      local acc = usage.stream("anthropic")
      acc:event { type = "message_start", message = { usage = { input_tokens = 10, cache_read_input_tokens = 100, output_tokens = 1 } } }
      acc:event { type = "message_delta", usage = { input_tokens = 10, cache_read_input_tokens = 100, output_tokens = 50 } }
      assert.same({ prompt_tokens = 110, completion_tokens = 50, total_tokens = 160, cached_tokens = 100 }, acc:result())
    end)

    it("Anthropic: a stream cut off after message_start gives what was seen", function()
      local cut = ANTHROPIC:sub(1, ANTHROPIC:find("event: message_delta", 1, true) + 10)
      assert.same({ prompt_tokens = 2520, completion_tokens = 2, total_tokens = 2522,
                    cached_tokens = 2048, cache_creation_tokens = 0 }, accumulate("anthropic", cut, 1):result())
      assert.is_nil(accumulate("anthropic", "event: ping\ndata: {}\n\n"):result())
    end)

    local GEMINI = table.concat {
      'data: {"candidates":[{"content":{"parts":[{"text":"The"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.5-flash"}\r\n\r\n',
      'data: {"candidates":[{"content":{"parts":[{"text":" sky"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":2,"totalTokenCount":36,"thoughtsTokenCount":26},"modelVersion":"gemini-2.5-flash"}\r\n\r\n',
      'data: {"candidates":[{"content":{"parts":[{"text":" is blue."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":6,"totalTokenCount":40,"thoughtsTokenCount":26,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}]},"modelVersion":"gemini-2.5-flash"}\r\n\r\n',
    }

    it("Gemini: the last usageMetadata wins, not summed", function()
      local want = { prompt_tokens = 8, completion_tokens = 32, total_tokens = 40, reasoning_tokens = 26 }
      assert.same(want, accumulate("gemini", GEMINI):result())
      assert.same(want, accumulate("gemini", GEMINI, 1):result())
      assert.equal(6, accumulate("gemini", GEMINI):raw().candidatesTokenCount)
    end)

    it("Gemini: a stream cut off early gives the last count seen", function()
      local cut = GEMINI:sub(1, GEMINI:find('data: {"candidates":[{"content":{"parts":[{"text":" is', 1, true) + 20)
      assert.same({ prompt_tokens = 8, completion_tokens = 28, total_tokens = 36, reasoning_tokens = 26 },
                  accumulate("gemini", cut, 3):result())
    end)

    it("ignores text that is not JSON and raises on misuse", function()
      local acc = usage.stream("openai")
      acc:event("not json")
      assert.is_nil(acc:result())
      assert.has_error(function() acc:event(5) end,
                       "bad argument #1 to 'event' (table or string expected, got number)")
      assert.has_error(function() usage.stream("cohere") end,
                       'bad argument #1 to \'stream\' ("openai", "anthropic" or "gemini" expected, got "cohere")')
      assert.has_error(function() usage.stream() end, "bad argument #1 to 'stream' (string expected, got nil)")
    end)
  end)

  describe("cost", function()
    local u = { prompt_tokens = 1000000, completion_tokens = 1000000, total_tokens = 2000000 }

    it("prices a known model", function()
      local p = usage.prices["gpt-4o"]
      close(p.input + p.output, usage.cost("gpt-4o", u))
    end)

    it("matches dated snapshots and aliases by the longest known prefix", function()
      local mini = usage.prices["gpt-4o-mini"]
      close(mini.input + mini.output, usage.cost("gpt-4o-mini-2024-07-18", u))
      local o = usage.prices["gpt-4o"]
      close(o.input + o.output, usage.cost("gpt-4o-2024-08-06", u))
      local s45 = usage.prices["claude-sonnet-4-5"]
      close(s45.input + s45.output, usage.cost("claude-sonnet-4-5-20250929", u))
      local h = usage.prices["claude-3-5-haiku"]
      close(h.input + h.output, usage.cost("claude-3-5-haiku-latest", u))
      local fl = usage.prices["gemini-2.5-flash-lite"]
      close(fl.input + fl.output, usage.cost("gemini-2.5-flash-lite-preview-06-17", u))
      local s = usage.prices["claude-3-5-sonnet"]
      close(s.input + s.output, usage.cost("claude-3-5-sonnet@20240620", u))
    end)

    it("needs a word boundary: gpt-4o is not priced as some gpt-4 entry", function()
      local key = select(2, usage.price("gpt-4o-mini-2024-07-18"))
      assert.equal("gpt-4o-mini", key)
      assert.is_nil(usage.cost("gpt-4oz", u))
      assert.is_nil(usage.cost("o3x", u))
    end)

    it("prices provider/model names by the model part", function()
      close(usage.cost("gpt-4o", u), usage.cost("openai/gpt-4o", u))
      close(usage.cost("claude-3-5-haiku-20241022", u), usage.cost("anthropic/claude-3-5-haiku-20241022", u))
    end)

    it("is nil for an unknown model", function()
      assert.is_nil(usage.cost("echo", u))
      assert.is_nil(usage.cost("llama-3-70b", u))
    end)

    it("prices cached and cache-write tokens at their own rates", function()
      local p = usage.prices["claude-sonnet-4"]
      local nu = usage.from_anthropic { input_tokens = 100, cache_read_input_tokens = 1000,
                                        cache_creation_input_tokens = 500, output_tokens = 200 }
      close((100 * p.input + 1000 * p.cached_input + 500 * p.cache_write + 200 * p.output) / 1e6,
            usage.cost("claude-sonnet-4-20250514", nu))
      local q = usage.prices["gpt-4o-mini"]
      local ou = usage.from_openai { prompt_tokens = 2000, completion_tokens = 100,
                                     prompt_tokens_details = { cached_tokens = 1500 } }
      close((500 * q.input + 1500 * q.cached_input + 100 * q.output) / 1e6, usage.cost("gpt-4o-mini", ou))
    end)

    it("charges cached tokens at the input price when no cached price is known", function()
      local p = usage.prices["gpt-4-turbo"]
      close((1000 * p.input) / 1e6, usage.cost("gpt-4-turbo", { prompt_tokens = 1000, completion_tokens = 0, cached_tokens = 400 }))
    end)

    it("prices Gemini thinking tokens as output", function()
      local p = usage.prices["gemini-2.5-flash"]
      local gu = usage.from_gemini { promptTokenCount = 8, candidatesTokenCount = 6, thoughtsTokenCount = 26, totalTokenCount = 40 }
      close((8 * p.input + 32 * p.output) / 1e6, usage.cost("gemini-2.5-flash", gu))
    end)

    it("takes overrides first, exact or by prefix, and prices unknown models through them", function()
      local ov = { ["gpt-4o"] = { input = 1, output = 2 }, ["my-model"] = { input = 3, output = 4 } }
      close(3, usage.cost("gpt-4o", u, ov))
      close(3, usage.cost("gpt-4o-2024-08-06", u, ov))
      close(7, usage.cost("my-model", u, ov))
      close(7, usage.cost("my-model-v2", u, ov))
      -- a longer built-in prefix still names its own model
      local mini = usage.prices["gpt-4o-mini"]
      close(mini.input + mini.output, usage.cost("gpt-4o-mini", u, ov))
      -- overrides are not changed and the built-in table is untouched
      local p = usage.prices["gpt-4o"]
      close(p.input + p.output, usage.cost("gpt-4o", u))
    end)

    it("looks a model up with work linear in its name's length (no prefix past 64 bytes is tried)", function()
      -- An overrides table that counts the keys looked up and their bytes.
      local lookups, bytes = 0, 0
      local ov = setmetatable({}, { __index = function(_, k)
        lookups, bytes = lookups + 1, bytes + #k
      end })
      local function work(model)
        lookups, bytes = 0, 0
        assert.is_nil(usage.price(model, ov))
        return lookups, bytes
      end
      -- every "-" a candidate boundary: the worst case for prefixes
      local small_n = work(("a-"):rep(50))
      local big_n, big_b = work(("a-"):rep(20000))
      assert.is_true(big_b <= 40000 + 64 * 64, "bytes looked up: " .. big_b)
      assert.is_true(big_n <= small_n + 2, "lookups: " .. small_n .. " then " .. big_n)
      -- still found: a long dated name, and provider/model
      local fl = usage.prices["gemini-2.5-flash-lite"]
      assert.equal(fl, usage.price("gemini-2.5-flash-lite-preview-06-17" .. ("-x"):rep(1000)))
      assert.equal(fl, usage.price("vertex/gemini-2.5-flash-lite-001"))
      -- a price name longer than 64 bytes matches exactly only
      local long = ("m"):rep(70)
      local ov2 = { [long] = { input = 1, output = 1 } }
      assert.equal(ov2[long], usage.price(long, ov2))
      assert.is_nil(usage.price(long .. "-2025", ov2))
    end)

    it("treats missing counts as 0", function()
      assert.equal(0, usage.cost("gpt-4o", {}))
    end)

    it("every built-in price has numeric input and output", function()
      local n = 0
      for k, p in pairs(usage.prices) do
        n = n + 1
        assert.is_number(p.input, k)
        assert.is_number(p.output, k)
        if p.cached_input then assert.is_true(p.cached_input <= p.input, k) end
      end
      assert.is_true(n >= 20)
    end)

    it("raises on misuse", function()
      assert.has_error(function() usage.cost(nil, u) end, "bad argument #1 to 'cost' (string expected, got nil)")
      assert.has_error(function() usage.cost("gpt-4o", nil) end, "bad argument #2 to 'cost' (table expected, got nil)")
      assert.has_error(function() usage.cost("gpt-4o", u, "x") end, "bad argument #3 to 'cost' (table expected, got string)")
      assert.has_error(function() usage.price(1) end, "bad argument #1 to 'price' (string expected, got number)")
    end)
  end)
end)

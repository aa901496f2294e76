-- The seed endpoints' route adapters (adapters/seed-*.lua): their
-- request and response functions, their stream writers, and the runtime
-- serving them on configured routes with the echo model.

local h = require "aigw.test.helpers"
local json = require "aigw.json"
local cjson = require "cjson"
local adapters = require "aigw.engine.adapters"
local chat = adapters.load("seed-chat")
local textgen = adapters.load("seed-text-generation")

local function hub(text, finish, model)
  return { id = "x", object = "chat.completion", model = model or "gpt-4o-mini",
           choices = { { index = 0, message = { role = "assistant", content = text },
                         finish_reason = finish or "stop" } } }
end

-- runs fn inside a request (response functions read the request's start time)
local function in_request(fn, ...)
  return h.with_request(h.request{ method = "POST", path = "/" }, fn, ...)
end

local function sse_data(text)
  local out = {}
  for d in text:gmatch("data: ([^\n]*)\n\n") do out[#out + 1] = d end
  return out
end

-- A writer run over hub chunks, as aigw.engine.reply runs it.
local function run_writer(adapter, ctx, chunks, model)
  local self = { ctx = ctx, model = model or "m-upstream" }
  adapter.start(self)
  local out = {}
  for _, c in ipairs(chunks) do
    local s = adapter.chunk(self, c)
    if s then out[#out + 1] = s end
  end
  out[#out + 1] = in_request(adapter.finish, self)
  return table.concat(out), self
end

local function delta_chunk(content, finish, model)
  return { object = "chat.completion.chunk", model = model,
           choices = { { index = 0, delta = { content = content }, finish_reason = finish } } }
end

describe("seed-chat", function()
  describe("request", function()
    it("makes one user message with the default model", function()
      assert.same({ model = "echo", messages = { { role = "user", content = "hi" } } },
                  chat.request({ message = "hi" }))
    end)

    it("takes model_preference and stream", function()
      local r = chat.request({ message = "hi", model_preference = "gpt-4o", stream = true })
      assert.equal("gpt-4o", r.model)
      assert.is_true(r.stream)
      assert.is_nil(chat.request({ message = "hi", stream = false }).stream)
    end)

    it("sends a string context as a system message first", function()
      assert.same({ { role = "system", content = "be brief" }, { role = "user", content = "hi" } },
                  chat.request({ message = "hi", context = "be brief" }).messages)
    end)

    it("sends a list context as the earlier turns", function()
      local turns = { { role = "user", content = "a" }, { role = "assistant", content = "b" } }
      assert.same({ turns[1], turns[2], { role = "user", content = "c" } },
                  chat.request({ message = "c", context = turns }).messages)
      assert.equal(1, #chat.request({ message = "c", context = json.decode("[]") }).messages)
      assert.equal(1, #chat.request({ message = "c", context = json.null }).messages)
    end)

    it("rejects bad input, naming the field", function()
      local cases = {
        { {}, "'message' is required" },
        { { message = json.null }, "'message' is required" },
        { { message = "" }, "'message' must not be empty" },
        { { message = " \n" }, "'message' must not be empty" },
        { { message = 1 }, "'message' must be a string" },
        { { message = "x", model_preference = 2 }, "'model_preference' must be a non-empty string" },
        { { message = "x", stream = "yes" }, "'stream' must be a boolean" },
        { { message = "x", context = 1 }, "'context' must be a string or a list" },
        { { message = "x", context = { role = "user" } }, "'context' must be a string or a list" },
        { { message = "x", context = { "x" } }, "'context[1]' must be an object" },
        { { message = "x", context = { { role = "bot", content = "x" } } }, "'context[1].role'" },
        { { message = "x", context = { { role = "user" } } }, "'context[1].content' must be a string" },
      }
      for _, c in ipairs(cases) do
        local r, err = chat.request(c[1])
        assert.is_nil(r)
        assert.matches(c[2], err, 1, true)
      end
    end)
  end)

  describe("response", function()
    it("answers response, model_used, usage, cost and processing_time_ms", function()
      local ctx = { model = "gpt-4o-mini", cost = 0.25,
                    usage = { prompt_tokens = 3, completion_tokens = 4, total_tokens = 7, cached_tokens = 1 } }
      local out = in_request(chat.response, hub("hello", "stop", "gpt-4o-mini-2024"), ctx)
      assert.equal("hello", out.response)
      assert.equal("gpt-4o-mini-2024", out.model_used)
      assert.same({ prompt_tokens = 3, completion_tokens = 4, total_tokens = 7 }, out.usage)
      assert.equal(0.25, out.cost)
      assert.is_number(out.processing_time_ms)
      assert.is_true(out.processing_time_ms >= 0 and out.processing_time_ms < 60000)
    end)

    it("writes null for unknown usage and cost, and \"\" for no text", function()
      local out = in_request(chat.response, { choices = { { message = { content = json.null } } } },
                             { model = "m" })
      assert.equal("", out.response)
      assert.equal("m", out.model_used)
      assert.equal(json.null, out.usage)
      assert.equal(json.null, out.cost)
    end)
  end)

  describe("stream writer", function()
    it("writes a delta per piece, then the final object and [DONE]", function()
      local ctx = { usage = { prompt_tokens = 1, completion_tokens = 2, total_tokens = 3 }, cost = 0.5 }
      local text = run_writer(chat, ctx, {
        delta_chunk("", nil, "gpt-x"), delta_chunk("Hel"), delta_chunk("lo"),
        delta_chunk(nil, "stop"),
        { object = "chat.completion.chunk", choices = json.decode("[]"), usage = { prompt_tokens = 1 } },
      })
      local d = sse_data(text)
      assert.equal(4, #d)
      assert.same({ delta = "Hel" }, cjson.decode(d[1]))
      assert.same({ delta = "lo" }, cjson.decode(d[2]))
      local last = cjson.decode(d[3])
      assert.equal("Hello", last.response)
      assert.equal("gpt-x", last.model_used)
      assert.same({ prompt_tokens = 1, completion_tokens = 2, total_tokens = 3 }, last.usage)
      assert.equal(0.5, last.cost)
      assert.is_number(last.processing_time_ms)
      assert.equal("[DONE]", d[4])
    end)

    it("refuses a stream whose text passes what its final object may hold", function()
      local w, self = chat, {}
      w.start(self)
      local piece = string.rep("x", 1024 * 1024)
      local out, err
      for _ = 1, 9 do
        out, err = w.chunk(self, delta_chunk(piece))
        if err then break end
      end
      assert.is_nil(out)
      assert.matches("longer than 8388608 bytes", err)
    end)

    it("falls back on the upstream model and writes error events", function()
      local text = run_writer(chat, {}, { delta_chunk("x") }, "up-model")
      assert.equal("up-model", cjson.decode(sse_data(text)[2]).model_used)
      local e = chat.error_event({}, "boom", "overloaded_error")
      assert.same({ error = { message = "boom", type = "overloaded_error" } }, cjson.decode(sse_data(e)[1]))
      e = chat.error_event({}, "boom")
      assert.equal("server_error", cjson.decode(sse_data(e)[1]).error.type)
    end)
  end)
end)

describe("seed-text-generation", function()
  describe("request", function()
    it("makes one user message and carries the sampling parameters", function()
      assert.same({ model = "gpt-4o-mini", messages = { { role = "user", content = "p" } },
                    max_tokens = 5, temperature = 0.5, top_p = 0.9, stream = true },
                  textgen.request({ model = "gpt-4o-mini", prompt = "p", max_tokens = 5,
                                    temperature = 0.5, top_p = 0.9, stream = true }))
      assert.same({ model = "echo", messages = { { role = "user", content = "p" } } },
                  textgen.request({ prompt = "p", max_tokens = json.null }))
    end)

    it("accepts the bounds", function()
      assert.is_table(textgen.request({ prompt = "p", temperature = 0, top_p = 1, max_tokens = 1 }))
      assert.is_table(textgen.request({ prompt = "p", temperature = 2, top_p = 1e-9 }))
    end)

    it("rejects bad input, naming the field", function()
      local cases = {
        { {}, "'prompt' is required" },
        { { prompt = "" }, "'prompt' must not be empty" },
        { { prompt = {} }, "'prompt' must be a string" },
        { { prompt = "p", model = "" }, "'model' must be a non-empty string" },
        { { prompt = "p", max_tokens = 0 }, "'max_tokens' must be a positive integer" },
        { { prompt = "p", max_tokens = -1 }, "'max_tokens' must be a positive integer" },
        { { prompt = "p", max_tokens = 2.5 }, "'max_tokens' must be a positive integer" },
        { { prompt = "p", max_tokens = "3" }, "'max_tokens' must be a positive integer" },
        { { prompt = "p", max_tokens = math.huge }, "'max_tokens' must be a positive integer" },
        { { prompt = "p", temperature = -0.01 }, "'temperature' must be in [0, 2]" },
        { { prompt = "p", temperature = 2.01 }, "'temperature' must be in [0, 2]" },
        { { prompt = "p", temperature = "1" }, "'temperature' must be a number in [0, 2]" },
        { { prompt = "p", top_p = 0 }, "'top_p' must be in (0, 1]" },
        { { prompt = "p", top_p = 1.5 }, "'top_p' must be in (0, 1]" },
        { { prompt = "p", top_p = 0 / 0 }, "'top_p' must be a number in (0, 1]" },
        { { prompt = "p", stream = 1 }, "'stream' must be a boolean" },
      }
      for _, c in ipairs(cases) do
        local r, err = textgen.request(c[1])
        assert.is_nil(r)
        assert.matches(c[2], err, 1, true)
      end
    end)
  end)

  it("answers generated_text, model, finish_reason, usage, cost and processing_time_ms", function()
    local ctx = { model = "m", usage = { prompt_tokens = 2, completion_tokens = 8, total_tokens = 10 } }
    local out = in_request(textgen.response, hub("text", "length", "gpt-4o"), ctx)
    assert.equal("text", out.generated_text)
    assert.equal("gpt-4o", out.model)
    assert.equal("length", out.finish_reason)
    assert.same({ prompt_tokens = 2, completion_tokens = 8, total_tokens = 10 }, out.usage)
    assert.equal(json.null, out.cost)
    assert.is_number(out.processing_time_ms)
  end)

  it("streams deltas, then the whole answer with its finish reason", function()
    local ctx = { usage = { prompt_tokens = 1, completion_tokens = 1, total_tokens = 2 }, cost = 0 }
    local d = sse_data(run_writer(textgen, ctx, { delta_chunk("a", nil, "m1"), delta_chunk(nil, "length") }))
    assert.same({ delta = "a" }, cjson.decode(d[1]))
    local last = cjson.decode(d[2])
    assert.equal("a", last.generated_text)
    assert.equal("length", last.finish_reason)
    assert.equal("m1", last.model)
    assert.equal(0, last.cost)
    assert.equal("[DONE]", d[3])
  end)
end)

describe("route adapters in the runtime", function()
  local runtime = require "aigw.engine.runtime"
  local conf_path, phases

  setup(function()
    -- An adapter that asks the provider for a usage chunk, as a chat
    -- client may: the echo model's usage must still be what reaches it.
    package.loaded["adapters.spec_usage_adapter"] = nil
    package.preload["adapters.spec_usage_adapter"] = function()
      local a = {}
      for k, v in pairs(chat) do a[k] = v end
      a.request = function(body, ctx)
        local r, err = chat.request(body, ctx)
        if r and r.stream then r.stream_options = { include_usage = true } end
        return r, err
      end
      return a
    end
    conf_path = os.tmpname()
    local f = assert(io.open(conf_path, "wb"))
    f:write([[
      return {
        plugins = {},
        routes = {
          { path = "/api/v1/chat", adapter = "seed-chat" },
          { path = "/api/v1/inference/text-generation", adapter = "seed-text-generation" },
          { path = "/usage-chat", adapter = "spec_usage_adapter" },
        },
      }
    ]])
    f:close()
    phases = runtime.init_worker(conf_path, 1)
  end)
  teardown(function()
    os.remove(conf_path)
    package.preload["adapters.spec_usage_adapter"] = nil
  end)

  local function handle(path, body, ctx)
    local req = h.request{ method = "POST", path = path, body = body }
    return h.with_request(req, phases.handler, ctx or {})
  end

  it("serves the chat route with echo", function()
    local status, body, headers = handle("/api/v1/chat", '{"message":"ping pong"}')
    assert.equal(200, status)
    assert.matches("Content-Type: application/json", headers, 1, true)
    local d = cjson.decode(body)
    assert.equal("ping pong", d.response)
    assert.equal("echo", d.model_used)
    assert.same({ prompt_tokens = 2, completion_tokens = 2, total_tokens = 4 }, d.usage)
    assert.equal(0, d.cost)
  end)

  it("answers 400 in the OpenAI envelope for a bad request", function()
    local status, body = handle("/api/v1/inference/text-generation", '{"prompt":"p","top_p":2}')
    assert.equal(400, status)
    local e = cjson.decode(body).error
    assert.equal("invalid_request", e.code)
    assert.equal("'top_p' must be in (0, 1]", e.message)
  end)

  it("streams from echo with usage and cost in the final event", function()
    for _, path in ipairs({ "/api/v1/chat", "/usage-chat" }) do
      local ctx = {}
      local status, body = handle(path, '{"message":"a b c","stream":true}', ctx)
      assert.equal(200, status)
      local d = sse_data(body)
      assert.equal("[DONE]", d[#d])
      local last = cjson.decode(d[#d - 1])
      assert.equal("a b c", last.response)
      assert.same({ prompt_tokens = 3, completion_tokens = 3, total_tokens = 6 }, last.usage)
      assert.equal(0, last.cost)
      assert.equal(0, ctx.cost)
      assert.equal(6, ctx.usage.total_tokens)
    end
  end)

  describe("an adapter without stream functions", function()
    -- A worker with the route /plain on the adapter; name: how the route
    -- names it (an adapters/ name by default, or a module's dotted name).
    local function worker(adapter, name)
      name = name or "spec_plain_adapter"
      local module = name:find(".", 1, true) and name or "adapters." .. name
      package.loaded[module] = nil
      package.preload[module] = function() return adapter end
      local p = os.tmpname()
      local f = assert(io.open(p, "wb"))
      f:write('return { plugins = {}, routes = { { path = "/plain", adapter = "' .. name .. '" } } }')
      f:close()
      local ok, res = pcall(runtime.init_worker, p, 1)
      os.remove(p)
      package.preload[module] = nil
      package.loaded[module] = nil
      return ok, res
    end
    local plain = {
      request = function(b) return { model = "echo", stream = b.stream,
                                     messages = { { role = "user", content = "a" } } } end,
      response = function(answer) return { text = answer.choices[1].message.content } end,
    }

    it("answers whole requests, and 400 to a stream request", function()
      local ok, ph = worker(plain)
      assert.is_true(ok, ph)
      local status, body = h.with_request(h.request{ method = "POST", path = "/plain", body = "{}" },
                                          ph.handler, {})
      assert.equal(200, status)
      assert.same({ text = "a" }, cjson.decode(body))
      status, body = h.with_request(h.request{ method = "POST", path = "/plain", body = '{"stream":true}' },
                                    ph.handler, {})
      assert.equal(400, status)
      assert.equal("streaming is not supported on /plain", cjson.decode(body).error.message)
    end)

    it("may be a Lua module of its own, named by its dotted name", function()
      local ok, ph = worker(plain, "mycompany.plain_adapter")
      assert.is_true(ok, ph)
      local status, body = h.with_request(h.request{ method = "POST", path = "/plain", body = "{}" },
                                          ph.handler, {})
      assert.equal(200, status)
      assert.same({ text = "a" }, cjson.decode(body))
    end)

    it("is refused at load with only part of the stream functions", function()
      local partial = { request = plain.request, response = plain.response, chunk = function() end }
      local ok, err = worker(partial)
      assert.is_false(ok)
      assert.matches("needs chunk, finish and error_event", err, 1, true)
    end)
  end)
end)

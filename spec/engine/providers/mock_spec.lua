-- aigw.engine.providers.mock: the built-in echo model.

local h = require "aigw.test.helpers"
local mock = require "aigw.engine.providers.mock"
local cjson = require "cjson"

local function serve(json, endpoint)
  local req = h.request{ method = "POST", path = "/v1/chat/completions",
                         headers = { ["x-request-id"] = "rid-7" }, body = cjson.encode(json) }
  return h.with_request(req, function()
    return mock.new("mock"):serve({}, endpoint or "chat/completions", nil, json)
  end)
end

describe("aigw.engine.providers.mock", function()
  it("is a provider named as configured", function()
    local p = mock.new("mine")
    assert.equal("mine", p.name)
    assert.equal("mock", p.kind)
  end)

  it("echoes the last user message", function()
    local status, body, headers = serve({ model = "echo", messages = {
      { role = "system", content = "be brief" },
      { role = "user", content = "first question" },
      { role = "assistant", content = "an answer" },
      { role = "user", content = "hello there world" },
    } })
    assert.equal(200, status)
    assert.equal("Content-Type: application/json\r\n", headers)
    local r = cjson.decode(body)
    assert.equal("chatcmpl-rid-7", r.id)
    assert.equal("chat.completion", r.object)
    assert.equal("echo", r.model)
    assert.same({ role = "assistant", content = "hello there world" }, r.choices[1].message)
    assert.equal("stop", r.choices[1].finish_reason)
    -- tokens are words: 2 + 2 + 2 + 3 in, 3 out
    assert.same({ prompt_tokens = 9, completion_tokens = 3, total_tokens = 12 }, r.usage)
  end)

  it("reads text parts of structured content", function()
    local _, body = serve({ model = "echo", messages = { { role = "user", content = {
      { type = "text", text = "one" }, { type = "image_url", image_url = { url = "x" } },
      { type = "text", text = "two" } } } } })
    assert.equal("one two", cjson.decode(body).choices[1].message.content)
  end)

  it("answers with an empty message when there is no user message", function()
    local _, body = serve({ model = "echo", messages = {} })
    local r = cjson.decode(body)
    assert.equal("", r.choices[1].message.content)
    assert.equal(0, r.usage.total_tokens)
  end)

  it("streams one chunk per word, then stop and [DONE]", function()
    local status, body, headers = serve({ model = "echo", stream = true,
                                          messages = { { role = "user", content = "a b c" } } })
    assert.equal(200, status)
    assert.matches("^Content%-Type: text/event%-stream\r\n", headers)
    local events = {}
    for data in body:gmatch("data: ([^\n]*)\n\n") do events[#events + 1] = data end
    assert.equal("[DONE]", events[#events])
    local first = cjson.decode(events[1])
    assert.equal("chat.completion.chunk", first.object)
    assert.same({ role = "assistant", content = "" }, first.choices[1].delta)
    local text = {}
    for i = 2, #events - 2 do text[#text + 1] = cjson.decode(events[i]).choices[1].delta.content end
    assert.equal("a b c", table.concat(text))
    assert.equal("stop", cjson.decode(events[#events - 1]).choices[1].finish_reason)
  end)

  it("adds a usage chunk with an empty choices array when asked", function()
    local _, body = serve({ model = "echo", stream = true, stream_options = { include_usage = true },
                            messages = { { role = "user", content = "a b" } } })
    local events = {}
    for data in body:gmatch("data: ([^\n]*)\n\n") do events[#events + 1] = data end
    local usage = events[#events - 1]
    assert.matches('"choices":[]', usage, 1, true)
    assert.same({ prompt_tokens = 2, completion_tokens = 2, total_tokens = 4 }, cjson.decode(usage).usage)
  end)

  it("serves only chat completions", function()
    local status, body = serve({ model = "echo", input = "x" }, "embeddings")
    assert.equal(404, status)
    assert.equal("not_found", cjson.decode(body).error.code)
  end)
end)

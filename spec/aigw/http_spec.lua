-- aigw.http.request against a mock upstream of the spec's own
-- (tests/integration/test_http_client.py covers TLS, pools and failures
-- through the whole gateway).

local h = require "aigw.test.helpers"
local aigw = require "aigw"
local http = require "aigw.http"
local json = require "aigw.json"

describe("aigw.http.request", function()
  local url, stop = h.mock_upstream("json")
  teardown(function() stop() end)

  it("posts a body and reads the answer", function()
    local res, err = http.request {
      method = "POST", url = url .. "/v1/chat/completions",
      headers = { ["content-type"] = "application/json", ["x-spec"] = "1" },
      body = '{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}',
      timeout = 5,
    }
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    local body = assert(json.decode(res.body))
    assert.equal("chat.completion", body.object)
  end)

  it("streams pieces to on_chunk as they arrive", function()
    local pieces = {}
    local res, err = http.request {
      method = "POST", url = url .. "/v1/chat/completions",
      headers = { ["x-mock-behavior"] = "stream" },
      body = '{"model":"gpt-test","stream":true,"messages":[]}',
      on_chunk = function(piece)
        pieces[#pieces + 1] = piece
        aigw.sleep(0)        -- on_chunk may wait
      end,
    }
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.is_nil(res.body)
    local all = table.concat(pieces)
    assert.matches("data: %[DONE%]", all)
  end)

  it("returns nil, err for network failures", function()
    local res, err = http.request { url = "http://127.0.0.1:1/", timeout = 2 }
    assert.is_nil(res)
    assert.matches("^connect failed", err)
    res, err = http.request { url = url .. "/x", headers = { ["x-mock-behavior"] = "json,delay-headers=5" },
                              timeout = 0.2 }
    assert.is_nil(res)
    assert.equal("timeout", err)
  end)

  it("raises on misuse, naming the field", function()
    assert.has_error(function() http.request { url = "ftp://x/" } end)
    assert.has_error(function() http.request { url = url, headers = { ["x-a"] = "a\r\nb" } } end)
    assert.has_error(function() http.request { url = url, nope = 1 } end)
  end)

  it("cannot wait in a coroutine the spec made", function()
    local co = coroutine.create(function() return http.request { url = url } end)
    local _, res, err = coroutine.resume(co)
    assert.is_nil(res)
    assert.matches("cannot wait", err)
  end)
end)

-- plugins/access-log.lua: one access line per request, formatted by the core
-- (aigw_ffi_log_access) from the request and what the plugin hands it.

local h = require "aigw.test.helpers"
local ffi = require "ffi"
local cjson = require "cjson"
require "aigw.ffi_defs"

local plugin = dofile(h.prefix .. "/plugins/access-log.lua")
local C = ffi.C

-- The one line the log phase writes for ctx, on a POST to path.
local function line(ctx, path)
  local req = h.request{ method = "POST", path = path or "/v1/chat/completions", query = "x=1",
                         headers = { ["x-request-id"] = "req-access-1" } }
  local text = h.capture_log(h.with_request, req, function() plugin.log({}, ctx) end)
  local n = select(2, text:gsub("\n", ""))
  assert.equal(1, n, text)
  return text
end

local function fields(text)
  return text:match(" info %[w%d+%] access (.*)\n$")
end

describe("access-log", function()
  local level, format
  before_each(function()
    level, format = C.aigw_log_level, C.aigw_log_format
    C.aigw_log_level, C.aigw_log_format = 1, 0
  end)
  after_each(function() C.aigw_log_level, C.aigw_log_format = level, format end)

  it("writes every field in order, from the request and ctx", function()
    local text = line({ status = 200, provider = "anthropic", model = "claude-3-5-haiku-latest",
                        attempts = 2, consumer = 1, cost = 0.00017,
                        usage = { prompt_tokens = 12, completion_tokens = 40, total_tokens = 52,
                                  cached_tokens = 3, reasoning_tokens = 4, cache_creation_tokens = 5,
                                  partial = true } })
    local f = fields(text)
    assert.matches("^request_id=req%-access%-1 method=POST path=/v1/chat/completions status=200 ms=%d+ "
                   .. "provider=anthropic model=claude%-3%-5%-haiku%-latest attempts=2 consumer=1 "
                   .. "prompt_tokens=12 completion_tokens=40 total_tokens=52 cached_tokens=3 "
                   .. "reasoning_tokens=4 cache_creation_tokens=5 partial=true cost=0%.000170$", f)
  end)

  it("leaves out what ctx does not have", function()
    assert.matches("^request_id=req%-access%-1 method=POST path=/v1/chat/completions status=499 ms=%d+$",
                   fields(line({ status = 499 })))
    assert.matches("ms=%d+$", fields(line({})))
  end)

  it("quotes and escapes what a client sent", function()
    local f = fields(line({ status = 200, model = 'a "b"=c\n\1\255', consumer = "team a" }))
    local want = ' model="a \\"b\\"=c\\n\\1\255" consumer="team a"'
    assert.equal(want, f:sub(-#want))
  end)

  it("writes a JSON object with typed fields", function()
    C.aigw_log_format = 1
    local o = cjson.decode(line({ status = 200, model = "m\1\255", consumer = 2, cost = 1.5,
                                  usage = { prompt_tokens = 7, partial = true } }))
    assert.equal("access", o.msg)
    assert.equal("req-access-1", o.request_id)
    assert.equal(200, o.status)
    assert.equal("number", type(o.ms))
    assert.equal("m\1\195\191", o.model)    -- the invalid byte as \u00ff
    assert.equal(2, o.consumer)
    assert.equal(7, o.prompt_tokens)
    assert.equal(true, o.partial)
    assert.equal(1.5, o.cost)
    assert.is_nil(o.completion_tokens)
  end)

  it("formats nothing below its level", function()
    C.aigw_log_level = 2
    local req = h.request{}
    local text = h.capture_log(h.with_request, req, function() plugin.log({}, { status = 200 }) end)
    assert.equal("", text)
  end)
end)

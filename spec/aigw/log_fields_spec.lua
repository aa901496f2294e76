-- aigw.log with structured fields: a table as the last argument.

local h = require "aigw.test.helpers"
local log = require "aigw.log"

-- The message part of the one line fn logs at error level (which no
-- log_level drops).
local function logged(...)
  local args, n = { ... }, select("#", ...)
  local text = h.capture_log(function() log.error(unpack(args, 1, n)) end)
  local lines = {}
  for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
  assert.equal(1, #lines, "expected one line, got: " .. text)
  return (assert(lines[1]:match(" error %[w%d+%] (.*)$"), lines[1]))
end

describe("aigw.log fields", function()
  it("writes key=value pairs after the message, keys sorted", function()
    assert.equal("quota consumer=3 model=gpt-4o used=1200",
                 logged("quota", { used = 1200, model = "gpt-4o", consumer = 3 }))
    assert.equal("m a=1 b=2 c=3 z=4", logged("m", { z = 4, c = 3, a = 1, b = 2 }))
  end)

  it("joins the message parts first, as without fields", function()
    assert.equal("took 12 ms route=chat", logged("took ", 12, " ms", { route = "chat" }))
  end)

  it("writes only the fields when there is no message", function()
    assert.equal("a=1 b=x", logged({ b = "x", a = 1 }))
  end)

  it("writes no trailing space for an empty table of fields", function()
    assert.equal("msg", logged("msg", {}))
  end)

  it("writes numbers and booleans with tostring", function()
    assert.equal("m f=1.5 i=42 n=-3 no=false yes=true", logged("m", { i = 42, f = 1.5, n = -3, yes = true, no = false }))
  end)

  it("quotes values with spaces, quotes or =", function()
    assert.equal('m s="two words"', logged("m", { s = "two words" }))
    assert.equal('m q="say \\"hi\\""', logged("m", { q = 'say "hi"' }))
    assert.equal('m e="a=b"', logged("m", { e = "a=b" }))
    assert.equal('m t="a\\9b"', logged("m", { t = "a\tb" }))
  end)

  it("quotes an empty string", function()
    assert.equal('m empty="" x=1', logged("m", { empty = "", x = 1 }))
  end)

  it("keeps a value with a newline on one line", function()
    assert.equal('m v="a\\nb"', logged("m", { v = "a\nb" }))
  end)

  it("leaves plain values unquoted, punctuation included", function()
    assert.equal("m path=/v1/chat?x&y url=http://h:1/p", logged("m", { path = "/v1/chat?x&y", url = "http://h:1/p" }))
  end)

  it("sorts numeric keys as text with the others", function()
    assert.equal("m 1=one 10=ten 2=two b=bee", logged("m", { "one", "two", b = "bee", [10] = "ten" }))
  end)

  it("treats only the last argument as fields", function()
    assert.matches("^table: 0x%x+ after$", logged({ a = 1 }, " after"))
    assert.equal("x 1", logged("x ", 1))
  end)
end)

describe("aigw.log fields, hostile values", function()
  it("never writes a control character raw", function()
    assert.equal('m c="a\\1b" d="\\0011" e="x\\27[31m" k_y=v',
                 logged("m", { c = "a\1b", d = "\0011", e = "x\27[31m", ["k y"] = "v" }))
  end)

  it("keeps a message's own newline out of the fields", function()
    local text = h.capture_log(function() log.error("m", { v = "a\nb\r\n2026 error [w1] fake" }) end)
    local n = 0
    for _ in text:gmatch("[^\n]+") do n = n + 1 end
    assert.equal(1, n)
    assert.matches('v="a\\nb\\13\\n2026 error %[w1%] fake"', text)
  end)

  it("writes past 64 fields", function()
    local t = {}
    for i = 1, 100 do t["k" .. string.format("%03d", i)] = i end
    local line = logged("m", t)
    assert.matches(" k001=1 ", line, 1, true)
    assert.matches(" k100=100$", line)
  end)
end)

describe("aigw.log in json", function()
  local ffi = require "ffi"
  local cjson = require "cjson"
  require "aigw.ffi_defs"
  local saved
  before_each(function()
    saved = ffi.C.aigw_log_format
    ffi.C.aigw_log_format = 1
  end)
  after_each(function() ffi.C.aigw_log_format = saved end)

  local function object(...)
    local args, n = { ... }, select("#", ...)
    local text = h.capture_log(function() log.error(unpack(args, 1, n)) end)
    assert.equal(1, select(2, text:gsub("\n", "")), text)
    return cjson.decode(text), text
  end

  it("writes one object per line, fields as typed members", function()
    local o = object("quota ", 3, { used = 1200, f = 1.5, model = "gpt-4o", ok = true, [2] = "two" })
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", o.time)
    assert.equal("error", o.level)
    assert.matches("^w%d+$", o.thread)
    assert.equal("quota 3", o.msg)
    assert.equal(1200, o.used)
    assert.equal(1.5, o.f)
    assert.equal("gpt-4o", o.model)
    assert.equal(true, o.ok)
    assert.equal("two", o["2"])
  end)

  it("escapes what JSON must, and bytes that are not UTF-8", function()
    local o, text = object("line\nbreak \"q\"", { s = "a\0b\1c\\d\239\191", u = "été" })
    assert.not_matches("\0", text, 1, true)
    assert.equal('line\nbreak "q"', o.msg)
    assert.equal("a\0b\1c\\d\195\175\194\191", o.s)   -- each bad byte as \u00XX
    assert.equal("été", o.u)
  end)

  it("writes NaN and infinities as strings", function()
    local o = object("m", { n = 0 / 0, i = math.huge })
    assert.equal("string", type(o.n))
    assert.equal("inf", o.i)
  end)
end)

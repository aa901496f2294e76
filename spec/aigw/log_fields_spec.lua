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

-- aigw.log: the error log the core writes, from Lua.

local h = require "aigw.test.helpers"
local log = require "aigw.log"
local ffi = require "ffi"
require "aigw.ffi_defs"   -- declares aigw_log_level

describe("aigw.log", function()
  local saved
  before_each(function()
    saved = ffi.C.aigw_log_level
    ffi.C.aigw_log_level = log.DEBUG
  end)
  after_each(function() ffi.C.aigw_log_level = saved end)

  it("has the level numbers", function()
    assert.same({ 0, 1, 2, 3 }, { log.DEBUG, log.INFO, log.WARN, log.ERROR })
  end)

  it("writes one line per call, at its level, arguments joined by tostring", function()
    local text = h.capture_log(function()
      log.warn("upstream slow: ", 12, " ms ", true, " ", nil)
      log.error("bad")
      log.info("fyi")
      log.debug("detail")
    end)
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(4, #lines)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ warn %[w%d+%] upstream slow: 12 ms true nil$", lines[1])
    assert.matches(" error %[w%d+%] bad$", lines[2])
    assert.matches(" info %[w%d+%] fyi$", lines[3])
    assert.matches(" debug %[w%d+%] detail$", lines[4])
  end)

  it("drops calls below the log level", function()
    ffi.C.aigw_log_level = log.WARN
    local text = h.capture_log(function()
      log.debug("no")
      log.info("no")
      log.warn("yes")
    end)
    assert.not_matches("no", text)
    assert.matches("warn %[w%d+%] yes", text)
  end)

  it("cuts long messages at 1800 bytes", function()
    local text = h.capture_log(log.error, string.rep("x", 5000))
    local xs = text:match("(x+)")
    assert.equal(1800, #xs)
  end)

  it("indents a message's own lines and escapes other control characters", function()
    local text = h.capture_log(log.warn, "bad model: ", "x\n2026-01-01T00:00:00.000Z error [w1] fake\27")
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(2, #lines)
    assert.matches(" warn %[w%d+%] bad model: x$", lines[1])
    assert.equal("  2026-01-01T00:00:00.000Z error [w1] fake\\27", lines[2])
  end)

  it("works outside a request", function()
    assert.has_no_error(function() h.capture_log(log.info, "no request here") end)
  end)
end)

-- aigw: the namespace plugins use.

local aigw = require "aigw"

describe("aigw", function()
  it("loads its modules on first use", function()
    assert.equal(require "aigw.request", aigw.request)
    assert.equal(require "aigw.response", aigw.response)
    assert.equal(require "aigw.shared", aigw.shared)
    assert.equal(require "aigw.log", aigw.log)
    assert.equal(require "aigw.crypto", aigw.crypto)
    assert.equal(require "aigw.errors", aigw.errors)
    assert.equal(require "aigw.timer", aigw.timer)
    assert.equal(require "aigw.json", aigw.json)
    assert.equal(require "aigw.sse", aigw.sse)
    assert.equal(require "aigw.usage", aigw.usage)
  end)

  it("gives nil for anything else", function()
    assert.is_nil(aigw.nothing_here)
    assert.is_nil(aigw.runtime)
  end)

  it("has the binary's version", function()
    assert.equal(aigw_core.version, aigw.version)
    assert.matches("^%d+%.%d+%.%d+", aigw.version)
  end)

  it("has clocks", function()
    assert.is_true(math.abs(aigw.now() - os.time()) < 2)
    local a = aigw.monotonic()
    assert.is_true(aigw.monotonic() >= a)
  end)

  it("knows its worker", function()
    assert.equal(1, aigw.worker.id)
    assert.is_number(aigw.worker.count)
  end)
end)

-- aigw.now and aigw.monotonic: the wall clock and the monotonic clock.

local aigw = require "aigw"

describe("clocks", function()
  it("now() is the wall clock, in seconds, with a fraction", function()
    local now = aigw.now()
    assert.is_number(now)
    assert.is_true(math.abs(now - os.time()) <= 1.5, "now() " .. now .. ", os.time() " .. os.time())
    -- sub-second precision: over a few reads, some value is not a whole second
    local fractional = false
    for _ = 1, 5 do
      local t = aigw.now()
      if t ~= math.floor(t) then fractional = true end
      aigw.sleep(0.001)
    end
    assert.is_true(fractional)
  end)

  it("monotonic() never goes back", function()
    local prev = aigw.monotonic()
    assert.is_number(prev)
    for _ = 1, 10000 do
      local t = aigw.monotonic()
      assert(t >= prev, "monotonic() went back")
      prev = t
    end
  end)

  it("both advance across aigw.sleep by at least the time slept", function()
    local m0, w0 = aigw.monotonic(), aigw.now()
    aigw.sleep(0.05)
    local dm, dw = aigw.monotonic() - m0, aigw.now() - w0
    assert.is_true(dm >= 0.049, "monotonic advanced " .. dm .. " s")
    assert.is_true(dm < 1, "monotonic advanced " .. dm .. " s")
    assert.is_true(dw >= 0.045, "now advanced " .. dw .. " s")
  end)

  it("work in every context, a timer callback included", function()
    local got
    aigw.timer.at(0, function() got = { aigw.now(), aigw.monotonic() } end)
    local deadline = aigw.monotonic() + 0.5
    while not got and aigw.monotonic() < deadline do aigw.sleep(0.002) end
    assert.is_table(got)
    assert.is_true(math.abs(got[1] - aigw.now()) < 1)
    assert.is_true(got[2] <= aigw.monotonic())
  end)
end)

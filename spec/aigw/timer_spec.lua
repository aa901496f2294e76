-- aigw.timer: callbacks on the loop. The spec body runs in an lthread, so
-- it waits with aigw.sleep while timers fire; every wait below polls a
-- condition with small sleeps, bounded.

local h = require "aigw.test.helpers"
local aigw = require "aigw"
local timer = require "aigw.timer"

-- Polls cond() every 2 ms until it is true or `limit` seconds have passed.
local function wait_for(cond, limit)
  local deadline = aigw.monotonic() + (limit or 0.5)
  while not cond() do
    if aigw.monotonic() > deadline then return false end
    aigw.sleep(0.002)
  end
  return true
end

-- Waits until a fresh one-shot timer due in `delay` seconds has run: every
-- timer due before it has had its chance to fire by then.
local function pass_time(delay)
  local done = false
  timer.at(delay, function() done = true end)
  assert.is_true(wait_for(function() return done end), "the sentinel timer never ran")
end

local function pack(...) return { n = select("#", ...), ... } end

describe("aigw.timer", function()
  local ids
  before_each(function() ids = {} end)
  -- anything a failed spec left behind
  after_each(function() for _, id in ipairs(ids) do timer.cancel(id) end end)

  describe("at", function()
    it("runs once, with premature = false and its extra arguments", function()
      local calls = {}
      local id = timer.at(0, function(...) calls[#calls + 1] = pack(...) end, "a", nil, 3)
      ids[#ids + 1] = id
      assert.is_number(id)
      assert.is_true(wait_for(function() return #calls > 0 end))
      assert.same({ n = 4, false, "a", nil, 3 }, calls[1])
      pass_time(0.01)
      assert.equal(1, #calls)
    end)

    it("waits for its delay", function()
      aigw.sleep(0)                      -- a fresh loop clock (see the pending spec below)
      local t0, fired = aigw.monotonic(), nil
      ids[#ids + 1] = timer.at(0.03, function() fired = aigw.monotonic() end)
      assert.is_true(wait_for(function() return fired ~= nil end))
      assert.is_true(fired - t0 >= 0.029, "fired after " .. (fired - t0) .. " s")
    end)

    it("counts its delay from the call, not from the loop's cached clock", function()
      aigw.sleep(0)                      -- the loop reads its clock here
      local busy = aigw.monotonic()
      while aigw.monotonic() - busy < 0.05 do end
      local t0, fired = aigw.monotonic(), nil
      ids[#ids + 1] = timer.at(0.03, function() fired = aigw.monotonic() end)
      assert.is_true(wait_for(function() return fired ~= nil end))
      assert.is_true(fired - t0 >= 0.029, "fired after " .. (fired - t0) .. " s")
    end)

    it("runs its callback in a thread that may wait, with no request", function()
      local slept, req_err
      ids[#ids + 1] = timer.at(0, function()
        local t0 = aigw.monotonic()
        aigw.sleep(0.02)
        local ok, err = pcall(aigw.request.get_path)
        req_err = not ok and err
        slept = aigw.monotonic() - t0
      end)
      assert.is_true(wait_for(function() return slept ~= nil end))
      assert.is_true(slept >= 0.019, "slept " .. slept .. " s")
      assert.matches("no request in this context", req_err, 1, true)
    end)

    it("fires in order of due time", function()
      local order = {}
      ids[#ids + 1] = timer.at(0.02, function() order[#order + 1] = "late" end)
      ids[#ids + 1] = timer.at(0.005, function() order[#order + 1] = "early" end)
      assert.is_true(wait_for(function() return #order == 2 end))
      assert.same({ "early", "late" }, order)
    end)

    it("logs an error in the callback with a traceback", function()
      local text = h.capture_log(function()
        ids[#ids + 1] = timer.at(0, function() error("timer went wrong") end)
        pass_time(0.005)
      end)
      assert.matches("error %[w1%] timer callback: .*timer went wrong", text)
      assert.matches("stack traceback:", text, 1, true)
    end)
  end)

  describe("every", function()
    it("runs repeatedly with its arguments until cancelled", function()
      local calls = {}
      local id = timer.every(0.005, function(...) calls[#calls + 1] = pack(...) end, "x")
      ids[#ids + 1] = id
      assert.is_true(wait_for(function() return #calls >= 3 end))
      assert.is_true(timer.cancel(id))
      for _, c in ipairs(calls) do assert.same({ n = 2, false, "x" }, c) end
      local n = #calls
      pass_time(0.03)                    -- six intervals
      assert.equal(n, #calls)
    end)

    it("skips a tick while the previous callback still runs", function()
      local active, max_active, starts, ends = 0, 0, {}, {}
      local id = timer.every(0.005, function()
        active = active + 1
        if active > max_active then max_active = active end
        starts[#starts + 1] = aigw.monotonic()
        aigw.sleep(0.025)                -- five intervals
        ends[#ends + 1] = aigw.monotonic()
        active = active - 1
      end)
      ids[#ids + 1] = id
      assert.is_true(wait_for(function() return #ends >= 3 end))
      assert.is_true(timer.cancel(id))
      assert.equal(1, max_active)
      for i = 2, #starts do
        assert.is_true(starts[i] >= ends[i - 1], "run " .. i .. " started before run " .. (i - 1) .. " ended")
      end
    end)

    it("goes on after an error in the callback", function()
      local n = 0
      local text = h.capture_log(function()
        ids[#ids + 1] = timer.every(0.005, function()
          n = n + 1
          error("tick " .. n)
        end)
        assert.is_true(wait_for(function() return n >= 3 end))
        timer.cancel(ids[#ids])
      end)
      assert.matches("timer callback: .*tick 1", text)
      assert.matches("timer callback: .*tick 2", text)
    end)
  end)

  describe("cancel and pending", function()
    it("cancels a pending timer, which then never runs", function()
      local before = timer.pending()
      local ran = false
      local id = timer.at(0.01, function() ran = true end)
      ids[#ids + 1] = id
      assert.equal(before + 1, timer.pending())
      assert.is_true(timer.cancel(id))
      assert.equal(before, timer.pending())
      assert.is_false(timer.cancel(id))
      pass_time(0.03)
      assert.is_false(ran)
    end)

    it("gives false for a timer that has fired, and for an unknown id", function()
      local before = timer.pending()
      local ran = false
      local id = timer.at(0, function() ran = true end)
      ids[#ids + 1] = id
      assert.is_true(wait_for(function() return ran end))
      assert.equal(before, timer.pending())
      assert.is_false(timer.cancel(id))
      assert.is_false(timer.cancel(1e9))
    end)

    it("counts at and every timers until they fire or are cancelled", function()
      local before = timer.pending()
      local fired = false
      local a = timer.at(0.005, function() fired = true end)
      local e = timer.every(1, function() end)
      ids[#ids + 1], ids[#ids + 2] = a, e
      assert.not_equal(a, e)
      assert.equal(before + 2, timer.pending())
      assert.is_true(wait_for(function() return fired end))
      assert.equal(before + 1, timer.pending())   -- a repeating timer stays pending
      assert.is_true(timer.cancel(e))
      assert.equal(before, timer.pending())
    end)
  end)

  describe("one_worker", function()
    it("schedules on worker 1, which is the worker under aigw test", function()
      assert.equal(1, aigw.worker.id)
      local got
      local id = timer.one_worker.at(0, function(...) got = pack(...) end, "once")
      ids[#ids + 1] = id
      assert.is_number(id)
      assert.is_true(wait_for(function() return got ~= nil end))
      assert.same({ n = 2, false, "once" }, got)

      local n = 0
      id = timer.one_worker.every(0.005, function() n = n + 1 end)
      ids[#ids + 1] = id
      assert.is_number(id)
      assert.is_true(wait_for(function() return n >= 2 end))
      assert.is_true(timer.cancel(id))
    end)

    it("schedules nothing and returns false on another worker", function()
      local before, ran = timer.pending(), false
      local saved = aigw_core.worker_id
      aigw_core.worker_id = 2
      local ok, a, e = pcall(function()
        return timer.one_worker.at(0, function() ran = true end),
               timer.one_worker.every(0.005, function() ran = true end)
      end)
      aigw_core.worker_id = saved
      assert.is_true(ok, a)
      assert.is_false(a)
      assert.is_false(e)
      assert.equal(before, timer.pending())
      pass_time(0.01)
      assert.is_false(ran)
    end)
  end)

  describe("argument errors", function()
    it("rejects a negative or NaN delay", function()
      assert.error_matches(function() timer.at(-1, print) end,
                           "aigw.timer.at: expected a number of seconds >= 0", nil, true)
      assert.error_matches(function() timer.at(0 / 0, print) end,
                           "aigw.timer.at: expected a number of seconds >= 0", nil, true)
      assert.error_matches(function() timer.every(-0.5, print) end,
                           "aigw.timer.every: expected a number of seconds >= 0", nil, true)
    end)

    it("rejects an interval below 0.001 s", function()
      local before = timer.pending()
      for _, s in ipairs({ 0, 0.0009 }) do
        assert.error_matches(function() timer.every(s, print) end,
                             "aigw.timer.every: the interval must be at least 0.001 s", nil, true)
      end
      assert.equal(before, timer.pending())
      local id = timer.every(0.001, function() end)
      ids[#ids + 1] = id
      assert.is_true(timer.cancel(id))
    end)

    it("rejects a callback that is not a function", function()
      assert.error_matches(function() timer.at(0, "print") end,
                           "bad argument #2 to 'at' (function expected, got string)", nil, true)
      assert.error_matches(function() timer.every(1) end,
                           "bad argument #2 to 'every' (function expected, got no value)", nil, true)
      assert.error_matches(function() timer.one_worker.at(0, {}) end,
                           "(function expected, got table)", nil, true)
    end)

    it("rejects a delay that is not a number", function()
      assert.error_matches(function() timer.at(nil, print) end, "bad argument #1 to 'at'", nil, true)
      assert.error_matches(function() timer.cancel("x") end, "bad argument #1 to 'cancel'", nil, true)
    end)
  end)
end)

-- aigw.timer -- callbacks on the worker's loop.
--
--   aigw.timer.at(delay, fn, ...)       once, after delay seconds
--   aigw.timer.every(interval, fn, ...) repeatedly (a tick is skipped while
--                                       the previous callback still runs)
--   aigw.timer.cancel(id)
--   aigw.timer.one_worker.at / .every   the same, scheduled on worker 1 only
--                                       (returns false on the others)
--
-- fn(premature, ...) runs in its own coroutine, so it may wait (aigw.sleep,
-- aigw.http, aigw.redis); premature is always false (timers of a replaced
-- generation or a stopping worker are cancelled, not called). An error in
-- fn is logged; the timer goes on.

local core = aigw_core

local M = {
  at = core.timer_at,
  every = core.timer_every,
  cancel = core.timer_cancel,
  pending = core.timer_count,
}

M.one_worker = {
  at = function(...)
    if core.worker_id ~= 1 then return false end
    return core.timer_at(...)
  end,
  every = function(...)
    if core.worker_id ~= 1 then return false end
    return core.timer_every(...)
  end,
}

return M

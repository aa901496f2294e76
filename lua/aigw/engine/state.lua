-- aigw.engine.state -- the engine's state for one request: one table,
-- ctx._engine, which plugins do not touch (plugin-guide.md). It is made
-- the first time engine code has something to keep for the request (a
-- request proxied on a pinned route may never have), in place of the
-- fields that would otherwise sit on ctx:
--
--   json, json_err        the body decoded whole (aigw.request.get_json)
--   fields, not_object,   the members the router reads, and where the
--   model_at, model_end,  model's value is in the body
--   fields_odd            (aigw.request.get_json_fields)
--   reply                 the way back (aigw.engine.reply)
--   target, group,        the alias target being tried, and how
--   attempt_start,        (aigw.engine.failover)
--   attempt_timeout,
--   failed
--   head, chunk,          strings the core points into, kept alive
--   response_lines        while it does
--
-- ctx._exit (the answer aigw.exit leaves) stays on ctx itself: the C core
-- reads it there.
--
--   local e = state.of(ctx)    -- made if need be
--   local e = ctx._engine      -- or nil, to only read

local new_tab = require "table.new"

local M = {}

function M.of(ctx)
  local e = ctx._engine
  if e == nil then
    e = new_tab(0, 8)
    ctx._engine = e
  end
  return e
end

return M

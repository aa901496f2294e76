-- aigw.redis -- Redis from plugins, without blocking the worker.
--
--   local redis = require("aigw").redis
--   local n, err = redis.call("INCR", "hits:" .. key)          -- 1, 2, ...
--   local res, err = redis.pipeline{ { "INCR", k }, { "EXPIRE", k, 60 } }
--
-- Each worker keeps one connection to the Redis of the config's `redis.url`
-- (made on first use, shared by every request of the worker; commands from
-- concurrent requests are pipelined on it). The calling request's coroutine
-- waits while the command is out: call it from access, upstream or a timer
-- callback. See docs/lua-api.md for replies, errors and refused commands.

local core = aigw_core or {}
local redis_client, redis_call, redis_pipeline =
  core.redis_client, core.redis_call, core.redis_pipeline

local M = {
  -- What a nil reply (a missing key, a nil element of an array) becomes:
  -- a value of its own, so a pipeline's results keep their positions. It
  -- is the same value as aigw.json.null (cjson.null).
  null = require("cjson.safe").null,
}

local NOT_CONFIGURED = "redis is not configured"

local settings      -- the config's redis section (url nil: not configured)
local client        -- made on first use

-- The runtime hands over the normalised config's `redis` section when it
-- loads a generation; the client is made then, so that a reload's new
-- generation shares the worker's connection with the old one.
function M._configure(conf)
  settings = conf
  client = nil
  if settings and settings.url and redis_client then
    client = redis_client(settings.url, settings.connect_timeout or 1, settings.timeout or 1)
  end
end

local function get_client()
  if client then return client end
  if not (settings and settings.url and redis_client) then return nil end
  client = redis_client(settings.url, settings.connect_timeout or 1, settings.timeout or 1)
  return client
end

-- call(cmd, ...) -> reply, or nil, err
function M.call(...)
  local c = client or get_client()
  if not c then return nil, NOT_CONFIGURED end
  return redis_call(c, ...)
end

-- pipeline{ {cmd, ...}, ... } -> { reply, ... }, or nil, err
function M.pipeline(cmds)
  local c = client or get_client()
  if not c then return nil, NOT_CONFIGURED end
  return redis_pipeline(c, cmds)
end

return M

-- aigw.engine.failover -- one request to a model alias that stands for several
-- targets: the balancer's plan gives the order, and each attempt goes to
-- the next target until one answers.
--
-- An attempt is dispatched like any routed request (aigw.engine.dispatch: the
-- request translated for the target's provider), then handed to the core
-- with aigw_core.proxy_attempt, which holds the client's response head
-- until the upstream's first body byte: a failure before that (connect,
-- timeout, the target's ttfb_timeout, an error status) comes back here and
-- the next attempt starts, while a first byte commits the answer to the
-- client and the call never returns. A whole translated answer, fetched in
-- Lua, fails the same way through failed in ctx._engine (aigw.engine.dispatch).
--
-- Which failures move on is the alias's retry.on (classes: connect,
-- timeout, 429, 5xx, 4xx, context_length). A target is tried again only
-- after every planned target had its turn, after an exponential backoff
-- with jitter that honours the provider's Retry-After; retry.attempts
-- bounds the attempts and retry.deadline the whole request.
--
-- Bookkeeping: each attempt that fails is reported to the balancer here;
-- the one that answers is reported by the log phase (M.finish), which
-- knows how it ended.

local dispatch = require "aigw.engine.dispatch"
local state = require "aigw.engine.state"
local errors = require "aigw.errors"
local request = require "aigw.request"
local response = require "aigw.response"

local core = aigw_core
local monotonic = require("aigw").monotonic
local sleep = require("aigw").sleep
local find, lower, min = string.find, string.lower, math.min
local traceback = debug.traceback
local tonumber, type, pairs, getmetatable, setmetatable = tonumber, type, pairs, getmetatable, setmetatable

local M = {}

-- Provider error bodies that say the prompt does not fit the model.
local CONTEXT_LENGTH = { "context_length_exceeded", "maximum context length", "prompt is too long",
                         "too many tokens", "context window", "input is too long" }

local function is_context_length(body)
  if type(body) ~= "string" or #body > 65536 then return false end
  local b = lower(body)
  for i = 1, #CONTEXT_LENGTH do
    if find(b, CONTEXT_LENGTH[i], 1, true) then return true end
  end
  return false
end

-- The class of an upstream error status.
local function status_class(status, body)
  if status == 429 then return "429" end
  if status >= 500 then return "5xx" end
  if status == 408 then return "timeout" end
  if status == 400 or status == 413 then
    if is_context_length(body) then return "context_length" end
  end
  return "4xx"
end
M.status_class = status_class

-- The class of a failure without an answer, from the core's error code.
local function code_class(code)
  if code == "upstream_timeout" then return "timeout" end
  -- internal_error: the core refused the request head the gateway made.
  if code == "no_memory" or code == "internal_error" then return "internal" end
  return "connect"
end

-- Header lines ("Name: value\r\n"...) to a table of lower-case names.
local function parse_lines(lines)
  local out = {}
  for name, value in lines:gmatch("([^:\r\n]+):[ \t]*([^\r\n]*)\r\n") do
    out[lower(name)] = value
  end
  return out
end

-- Seconds the provider asks to wait: Retry-After (seconds), OpenAI's
-- retry-after-ms; nil when it did not say.
local function retry_after(headers)
  if not headers then return nil end
  local ms = tonumber(headers["retry-after-ms"] or "")
  if ms and ms >= 0 then return ms / 1000 end
  local s = tonumber(headers["retry-after"] or "")
  if s and s >= 0 then return s end
  return nil
end
M.retry_after = retry_after

-- The delay before trying a target again: base * 2^(n-1), capped, with
-- equal jitter (half fixed, half random) so that clients retrying together
-- spread out; never less than what the provider asked for.
local function backoff(retry, n, asked, random)
  local d = min(retry.max_backoff, retry.backoff * 2 ^ (n - 1))
  d = d / 2 + d / 2 * random()
  if asked and asked > d then d = asked end
  return d
end
M.backoff = backoff

-- A failed attempt as the client would get it, if it is the last.
local function failure_response(ctx, f)
  if f.status then
    return dispatch.upstream_error(ctx, f.status, f.headers or parse_lines(f.head or ""), f.body or "")
  end
  if f.client then return f.client[1], f.client[2], f.client[3] end
  return errors.response(f.client_status or 502, f.code or "bad_gateway", f.message or "upstream failed")
end

-- A route adapter's request (a table it made, not the client's bytes) is
-- changed by dispatching it: each attempt gets its own copy.
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return setmetatable(out, getmetatable(v))
end

-- The response lines naming the target, made once per target and count.
local lines_memo = setmetatable({}, { __mode = "k" })

local function target_lines(provider, target, attempts)
  local memo = lines_memo[target]
  if not memo then
    memo = {}
    lines_memo[target] = memo
  end
  local lines = memo[attempts]
  if not lines then
    lines = "x-aigw-provider: " .. provider.name .. "\r\nx-aigw-model: " .. target.model ..
            "\r\nx-aigw-attempts: " .. attempts .. "\r\n"
    memo[attempts] = lines
  end
  return lines
end

-- One attempt on target. Returns nil and the response when it answered (a
-- whole answer made in Lua, or an error not worth another target), or the
-- failure. A proxied attempt that answers does not return at all.
local function attempt(ctx, env, route, provider, target, j, model, timeout)
  local e = state.of(ctx)
  e.failed, e.attempt_timeout = nil, timeout
  local a1, a2, a3, a4, a5
  if provider.kind == "mock" then
    a1, a2, a3 = dispatch.mock(ctx, route, provider, j == e.fields and request.get_json(ctx) or j)
  else
    a1, a2, a3, a4, a5 = env.upstream(ctx, dispatch.serve(ctx, route, provider, j, model, target.model, env.conf))
  end
  if a1 ~= "proxy" then
    local failed = e.failed
    if not failed then return nil, a1, a2, a3 end
    failed.client = { a1, a2, a3 }
    if failed.status then
      failed.class = status_class(failed.status, failed.body)
    else
      failed.class = code_class(failed.code)
    end
    return failed
  end
  -- op, target, path, body and lines stay in these locals while the core
  -- points into them.
  local op = core.attempt_op()
  local status, head, body, client_status = core.proxy_attempt(op, a2, a3, a4, a5, target.ttfb_timeout, timeout)
  if status then
    local headers = parse_lines(head)
    return { status = status, headers = headers, body = body, class = status_class(status, body) }
  end
  return { code = head, message = body, client_status = client_status, class = code_class(head) }
end

-- Serves a request for alias (its normalised config) through group (its
-- balancer group). env: { conf, providers, upstream = the upstream-phase
-- runner, random }. j: the request as the router read it; model: the
-- name the client sent. Returns what the handler returns.
function M.serve(ctx, env, route, alias, group, j, model, info)
  local plan, why = group:plan(ctx, info)
  if not plan then
    return errors.response(503, "no_healthy_target", why or ("no healthy target for model '" .. model .. "'"))
  end
  local retry = alias.retry
  local started = monotonic()
  local deadline = retry.deadline and started + retry.deadline
  local filters = response._filter_state()
  local providers = env.providers
  local e = state.of(ctx)
  local made = j ~= e.fields and retry.attempts > 1 and copy(j)
  local n, turns, last, round_wait = #plan, 0, nil, nil
  local i = 0
  for attempts = 1, retry.attempts do
    i = i + 1
    if i > n then
      -- Every planned target had its turn: wait before the next round.
      i, turns = 1, turns + 1
      local delay = backoff(retry, turns, round_wait, env.random)
      if round_wait and round_wait > retry.max_retry_after then break end
      round_wait = nil
      if deadline and monotonic() + delay >= deadline then break end
      sleep(delay)
    end
    local target = plan[i]
    local provider = providers[target.provider]
    local timeout = target.timeout or provider.timeouts.total
    if deadline then
      local left = deadline - monotonic()
      if left <= 0 then break end
      if left < timeout then timeout = left end
    end
    if attempts > 1 then
      -- A fresh start: the filters the request had, the body as the client
      -- sent it (the last attempt may have changed the decoded one).
      response._filter_state(filters)
      e.json, e.reply, ctx.upstream_status, ctx.upstream_body = nil, nil, nil, nil
      if made then j = copy(made) end
    end
    ctx.attempts, ctx.provider, ctx.model = attempts, provider.name, target.model
    response._response_lines(ctx, target_lines(provider, target, attempts))
    e.target, e.group, e.attempt_start = target, group, monotonic()
    group:begin(target)
    local ok, failed, s, b, h = xpcall(attempt, traceback, ctx, env, route, provider, target, j, model, timeout)
    if not ok then
      -- The gateway failed (a plugin, a bad request the dispatcher choked
      -- on), not the target: it is not charged for it.
      e.target = nil
      group:finish(target, { ok = false, class = "internal" })
      error(failed, 0)
    end
    if not failed then return s, b, h end
    e.target = nil
    group:finish(target, { ok = false, class = failed.class })
    failed.retry_after = retry_after(failed.headers)
    -- The longest wait any target of this round asked for.
    if round_wait and (not failed.retry_after or failed.retry_after < round_wait) then
      failed.retry_after = round_wait
    end
    round_wait = failed.retry_after
    last = failed
    if not retry.on[failed.class] then break end
  end
  if not last then
    return errors.response(504, "upstream_timeout", "the request's deadline passed before an attempt")
  end
  -- The answer is an error made here, not the last attempt's translated
  -- stream: the filters that attempt asked for do not apply to it.
  response._filter_state(filters)
  e.reply = nil
  if deadline and monotonic() >= deadline and last.class == "timeout" then
    return errors.response(504, "upstream_timeout",
      "upstream timeout: the request's deadline passed after " .. ctx.attempts .. " attempt(s)")
  end
  return failure_response(ctx, last)
end

-- The log phase: the attempt that answered, as it ended. A stream that
-- failed after it began counts against its target; a client that went
-- away does not.
function M.finish(ctx, status)
  local e = ctx._engine
  local target = e and e.target
  if not target then return end
  e.target = nil
  local now = monotonic()
  local started = e.attempt_start
  local head = core.request_head_time()
  local x = e.reply
  local outcome = { ok = true, total = now - started, ttfb = head and head - started or nil }
  if status == 499 then
    outcome.ok, outcome.class = false, "client"
  elseif x and x.failed then
    outcome.ok, outcome.class = false, "stream"
  elseif status >= 500 then
    -- A committed answer's status was under 400 (error statuses come back
    -- to the loop): a 5xx here is the gateway's own (a plugin failed), not
    -- the target's, and its breaker does not hear of it.
    outcome.ok, outcome.class = false, "internal"
  end
  e.group:finish(target, outcome)
end

M._parse_lines = parse_lines   -- for specs

return M

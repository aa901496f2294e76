-- aigw.engine.runtime -- what a VM generation runs: it loads the config, plugins
-- and providers once (init_worker), and hands the C core one function per
-- phase.
--
--   handler(ctx)                 the request's lthread: access plugins, then
--                                routing (aigw.engine.router), then upstream
--                                plugins; returns a response or a proxy
--                                decision for the core
--   header_filter(ctx, st, head) every response head (upstream's or made
--                                in Lua) when some plugin has the phase
--   body_filter(ctx, chunk, eof) body pieces, for requests that asked
--   log(ctx, status)             after the response is complete
--
-- The last three run on the generation's sync thread and cannot wait.
-- Nothing per request lives in this module: per-request state is ctx (the
-- engine's own under ctx._engine, aigw.engine.state).

local config = require "aigw.engine.config"
local plugins_loader = require "aigw.engine.plugins"
local request = require "aigw.request"
local cjson = require "cjson"
local admin = require "aigw.engine.admin"
local router = require "aigw.engine.router"
local response = require "aigw.response"
local log = require "aigw.log"
local failover = require "aigw.engine.failover"
local health = require "aigw.engine.health"
local state = require "aigw.engine.state"

local M = {}

-- What the handler returns, with ctx, when the body is still to come.
local NEED_BODY = aigw_core.need_body

local function build_providers(conf)
  local out = {}
  for name, p in pairs(conf.providers) do
    local kind = p.kind == "openai-compatible" and "openai" or p.kind
    out[name] = require("aigw.engine.providers." .. kind).new(name, p)
  end
  return out
end

-- Targets for URLs a plugin picks in the upstream phase, one per origin.
local url_targets = {}

local function target_for_url(url)
  local origin, path = url:match("^(https?://[^/?#]+)(.*)$")
  if not origin then error("ctx.upstream.url: expected an http:// or https:// URL, got " .. url, 0) end
  local t = url_targets[origin]
  if not t then
    t = aigw_core.target { url = origin }
    url_targets[origin] = t
  end
  if path == "" then path = "/" end
  return t, path
end

local function header_lines(headers, what)
  local lines, bad, name = response._header_lines(headers)
  if lines then return lines end
  if bad == "name" then error(what .. ": bad header name " .. tostring(name), 0) end
  error(what .. ": header " .. name .. " has CR, LF or NUL", 0)
end


-- Splits the plugin chain by phase, keeping priority order.
local PHASES = { "init_worker", "access", "upstream", "header_filter", "body_filter", "log" }

local function by_phase(chain)
  local out = {}
  for _, ph in ipairs(PHASES) do
    local list = {}
    for _, p in ipairs(chain) do
      if p.plugin[ph] then
        list[#list + 1] = { fn = p.plugin[ph], conf = p.conf, name = p.plugin.name, plugin = p.plugin }
      end
    end
    out[ph] = list
  end
  return out
end

-- An answer from access or upstream: status, body (string or table), headers.
local function answer(status, body, headers)
  if type(headers) == "table" then headers = header_lines(headers, "response headers") end
  if type(body) == "table" then
    body = cjson.encode(body)
    headers = "Content-Type: application/json\r\n" .. (headers or "")
  end
  return status, body or "", headers
end

function M.init_worker(conf_path)
  local conf = config.load(conf_path)
  require("aigw.redis")._configure(conf.redis)
  local prefix = aigw_core.prefix
  local chain = plugins_loader.load(prefix, conf.plugins, conf)
  local providers = build_providers(conf)

  local phases = by_phase(chain)
  local access, upstream = phases.access, phases.upstream
  local naccess, nupstream = #access, #upstream

  -- The upstream phase: plugins see and may change ctx.upstream (target,
  -- url, path, body, headers) before the core sends it.
  local function run_upstream(ctx, decision, target, path, body, extra)
    if decision ~= "proxy" or nupstream == 0 then return decision, target, path, body, extra end
    local up = { provider = ctx.provider, target = target, path = path, body = body, headers = {} }
    ctx.upstream = up
    for i = 1, nupstream do
      local p = upstream[i]
      local status, rbody, rheaders = p.fn(p.conf, ctx)
      if status then return answer(status, rbody, rheaders) end
    end
    local t, upath = up.target, up.path
    if up.url then t, upath = target_for_url(up.url) end
    local lines = header_lines(up.headers, "ctx.upstream.headers")
    if extra then lines = extra .. lines end
    return "proxy", t, upath, up.body, lines ~= "" and lines or nil
  end

  -- What follows the access phase: the router (aigw.engine.router), and the
  -- balancer its aliases go through.
  local route_request, routing = router.new(conf, providers, run_upstream)
  local groups = routing.groups
  local serve_admin = admin.new(conf, routing)
  health.start(conf, providers, routing)
  for _, p in ipairs(phases.init_worker) do
    local ok, err = pcall(p.fn, p.conf)
    if not ok then error("plugin " .. p.name .. ": init_worker: " .. tostring(err), 0) end
  end

  local function handler(ctx)
    ctx.config = conf
    -- The admin listener has its own keys and rules (aigw.engine.admin), decided
    -- here before any plugin: no plugin, key-auth or another, can let an
    -- admin request through, and none is needed to stop one.
    if request.is_admin() then return serve_admin(request.get_path(), request.get_method()) end
    for i = 1, naccess do
      local p = access[i]
      local status, body, headers = p.fn(p.conf, ctx)
      if status then return answer(status, body, headers) end
    end
    -- The access phase may have run before the body arrived (it decides
    -- at the head): what follows needs it. Then the handler ends here and
    -- the core runs route(ctx) on the same coroutine once the body is in
    -- (rather than waiting in read_body: code around a wait is not
    -- compiled).
    if not request.body_complete() then return NEED_BODY, ctx end
    return route_request(ctx)
  end

  local out = { handler = handler, route = route_request }

  -- header_filter and body_filter are always there: the runtime's own
  -- (translation, usage; asked per request) run before the plugins'.
  -- filter_all: some plugin wants every response head; filter_errors: some
  -- plugin (error-mapping) wants upstream error answers, whole.
  local hf = phases.header_filter
  for _, p in ipairs(hf) do
    if p.plugin.filter_errors then out.filter_errors = true else out.filter_all = true end
  end
  out.header_filter = function(ctx, status, head, from_upstream, body)
    if from_upstream then ctx.upstream_status, ctx.upstream_body = status, body end
    local e = ctx._engine
    local x = e and e.reply
    if x and from_upstream then status, head = x:head(status, head) end
    -- The core reads the head it gets back after more Lua has run (body
    -- filters): the engine's state keeps it alive.
    if #hf == 0 then
      if not e then e = state.of(ctx) end
      e.head = head
      return status, head
    end
    local resp = response._begin(ctx, "header_filter", status, head)
    for i = 1, #hf do
      local p = hf[i]
      local ok, err = pcall(p.fn, p.conf, ctx)
      if ctx._exit then break end
      if not ok then
        response._finish()
        error("plugin " .. p.name .. " header_filter: " .. tostring(err), 0)
      end
    end
    response._finish()
    if ctx._exit then return false end
    if resp.dirty then head = response._serialize(resp) end
    state.of(ctx).head = head
    return resp.status, head
  end

  -- err: the upstream failed mid-body (eof is true); plugins: some plugin
  -- asked for filter_body() (else only the runtime's filter runs); usage:
  -- for an answer the core only tapped, its "usage" member (one call).
  local bf = phases.body_filter
  -- A second result true: the response ends with this chunk (the reply
  -- ended the client's stream before the upstream's), see aigw.engine.reply.
  out.body_filter = function(ctx, chunk, eof, err, plugins, usage)
    local e = ctx._engine
    local x = e and e.reply
    local ended
    if x then
      if usage then
        x:tapped(usage)
        return ""
      end
      chunk, ended = x:body(chunk, eof, err)
    end
    if plugins and #bf > 0 then
      response._begin(ctx, "body_filter")
      for i = 1, #bf do
        local p = bf[i]
        local ok, res = pcall(p.fn, p.conf, ctx, chunk, eof, err)
        if not ok then
          response._finish()
          error("plugin " .. p.name .. " body_filter: " .. tostring(res), 0)
        end
        if res ~= nil then chunk = tostring(res) end
      end
      response._finish()
    end
    -- (a plugin may have made the engine's state since e was read)
    state.of(ctx).chunk = chunk
    return chunk, ended
  end

  local lg = phases.log
  if #lg > 0 or next(groups) then
    out.log = function(ctx, status)
      ctx.status = status
      -- First the target's bookkeeping (its in-flight count must not stay
      -- up whatever fails next), then a stream cut short: the usage
      -- reported until then.
      local e = ctx._engine
      if e then
        if e.target then failover.finish(ctx, status) end
        if e.reply then e.reply:finish(false) end
      end
      response._begin(ctx, "log")
      for i = 1, #lg do
        local ok, err = pcall(lg[i].fn, lg[i].conf, ctx)
        if not ok then log.error("plugin ", lg[i].name, " log: ", err) end
      end
      response._finish()
    end
  end
  return out
end

return M

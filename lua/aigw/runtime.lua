-- aigw.runtime -- what a VM generation runs: it loads the config, plugins
-- and providers once (init_worker), and hands the C core one function per
-- phase.
--
--   handler(ctx)                 the request's lthread: access plugins, then
--                                routing, then upstream plugins; returns a
--                                response or a proxy decision for the core
--   header_filter(ctx, st, head) every response head (upstream's or made
--                                in Lua) when some plugin has the phase
--   body_filter(ctx, chunk, eof) body pieces, for requests that asked
--   log(ctx, status)             after the response is complete
--
-- The last three run on the generation's sync thread and cannot wait.
-- Nothing per request lives in this module: per-request state is ctx.

local config = require "aigw.config"
local plugins_loader = require "aigw.plugins"
local request = require "aigw.request"
local errors = require "aigw.errors"
local cjson = require "cjson"
local admin = require "aigw.admin"
local dispatch = require "aigw.dispatch"
local response = require "aigw.response"
local log = require "aigw.log"
local balancer = require "aigw.balancer"
local failover = require "aigw.failover"
local health = require "aigw.health"
local shared = require "aigw.shared"

local find = string.find

local M = {}

-- What the handler returns, with ctx, when the body is still to come.
local NEED_BODY = aigw_core.need_body

-- Inbound endpoints served by default, by path: the client's format, the
-- provider operation they map to and the method they take.
-- Each is served with and without the /v1 prefix, and again under the
-- config's api_prefix when there is one.
local DEFAULT_ROUTES = {
  ["/v1/chat/completions"] = { client = "openai", endpoint = "chat/completions", method = "POST" },
  ["/v1/completions"]      = { client = "openai", endpoint = "completions", method = "POST" },
  ["/v1/embeddings"]       = { client = "openai", endpoint = "embeddings", method = "POST" },
  ["/v1/responses"]        = { client = "openai", endpoint = "responses", method = "POST" },
  ["/v1/messages"]         = { client = "anthropic", endpoint = "messages", method = "POST" },
  ["/v1/messages/count_tokens"] = { client = "anthropic", endpoint = "messages/count_tokens", method = "POST" },
  ["/v1/models"]           = { models = true, method = "GET" },
}

local function build_providers(conf)
  local out = {}
  for name, p in pairs(conf.providers) do
    local kind = p.kind == "openai-compatible" and "openai" or p.kind
    out[name] = require("aigw.providers." .. kind).new(name, p)
  end
  return out
end

-- A route adapter module: request(body, ctx) -> chat request or nil, err;
-- response(chat_answer, ctx) -> table or string; for streams, chunk(self, c)
-- and finish(self) -> wire text, error_event(self, msg, type), start(self)
-- optional. An adapter without chunk and finish does not stream.
local STREAM_FUNCTIONS = { "chunk", "finish", "error_event" }

local function load_adapter(name)
  local ok, a = pcall(require, name)
  if not ok then error("route adapter " .. name .. ": " .. tostring(a), 0) end
  if type(a) ~= "table" or type(a.request) ~= "function" or type(a.response) ~= "function" then
    error("route adapter " .. name .. ": must return a table with request and response functions", 0)
  end
  local streams = a.chunk ~= nil or a.finish ~= nil or a.error_event ~= nil or a.start ~= nil
  if streams then
    for _, f in ipairs(STREAM_FUNCTIONS) do
      if type(a[f]) ~= "function" then
        error("route adapter " .. name .. ": a streaming adapter needs chunk, finish and error_event functions ("
              .. f .. " is " .. type(a[f]) .. ")", 0)
      end
    end
    if a.start ~= nil and type(a.start) ~= "function" then
      error("route adapter " .. name .. ": start must be a function", 0)
    end
  end
  return a, streams
end

-- The model ids a client can send, in OpenAI's list format: echo, the
-- aliases, and each provider's allow-listed models (bare for the provider
-- named openai, which bare names reach; provider/model for the others).
local function model_index(conf)
  local list = { { id = "echo", object = "model", created = 0, owned_by = "aigw" } }
  local names = {}
  for alias in pairs(conf.models) do names[#names + 1] = alias end
  table.sort(names)
  for _, alias in ipairs(names) do
    -- An alias of several targets belongs to no one provider.
    local m = conf.models[alias]
    list[#list + 1] = { id = alias, object = "model", created = 0,
                        owned_by = #m.targets == 1 and m.provider or "aigw" }
  end
  local pnames = {}
  for name, p in pairs(conf.providers) do if p.models then pnames[#pnames + 1] = name end end
  table.sort(pnames)
  for _, name in ipairs(pnames) do
    for _, m in ipairs(conf.providers[name].models) do
      list[#list + 1] = { id = name == "openai" and m or (name .. "/" .. m), object = "model",
                          created = 0, owned_by = name }
    end
  end
  local by_id = {}
  for _, e in ipairs(list) do by_id[e.id] = e end
  return list, by_id
end

-- Picks the provider for a model name: `echo`, an alias, `provider/model`,
-- a bare name by the providers' naming (claude-* to a provider named
-- anthropic, gemini-* to one named gemini, when configured), else the
-- provider named openai. A provider with an allow-list serves only those
-- models. Returns provider, model name to send upstream; nil when none.
local function allowed(conf, name, model)
  local list = conf.providers[name] and conf.providers[name].models
  if not list then return true end
  for _, m in ipairs(list) do if m == model then return true end end
  return false
end

local function pick_provider(conf, providers, model)
  if model == "echo" then return providers.mock, model end
  local prefix, rest = model:match("^([^/]+)/(.+)$")
  if prefix and providers[prefix] then
    if not allowed(conf, prefix, rest) then return nil end
    return providers[prefix], rest
  end
  local by_name = (model:find("^claude%-") and "anthropic") or (model:find("^gemini%-") and "gemini") or nil
  local name = by_name and providers[by_name] and by_name or "openai"
  if not providers[name] or not allowed(conf, name, model) then return nil end
  return providers[name], model
end

-- Model names are the client's, echoed in response headers (x-aigw-model)
-- and upstream paths: a name longer than this, or holding a control
-- character (any byte below 0x20, or DEL), is refused before routing, a 400
-- invalid_model. Aliases and targets are held to the same by config.lua.
local MODEL_MAX = 256
local BAD_MODEL_BYTE = "[%z\1-\31\127]"

-- The same answer for the same name until the next reload, without the
-- pattern matching (which LuaJIT does not compile) on every request. Names
-- are the client's: the memo is bounded in entries and, since names past
-- MODEL_MAX are refused before it, in their size; it starts over when
-- full. The third value: the response header lines that name the target.
-- A refused name gives nil, false.
local MEMO_MAX = 1024
local function memo_picker(conf, providers)
  local memo, n, NONE, BAD = {}, 0, {}, {}
  local function pick(model)
    local m = memo[model]
    if m then
      if m == NONE then return nil end
      if m == BAD then return nil, false end
      return m[1], m[2], m[3]
    end
    if #model > MODEL_MAX then return nil, false end
    local p, um
    local bad = find(model, BAD_MODEL_BYTE) ~= nil
    if not bad then p, um = pick_provider(conf, providers, model) end
    if n >= MEMO_MAX then memo, n = {}, 0 end
    local lines = p and "x-aigw-provider: " .. p.name .. "\r\nx-aigw-model: " .. um .. "\r\n"
    memo[model] = bad and BAD or p and { p, um, lines } or NONE
    n = n + 1
    if bad then return nil, false end
    return p, um, lines
  end
  -- For specs: the memo as it stands.
  return pick, function() return memo, n end
end
M._memo_picker = memo_picker

-- What the balancer weighs a request by: its sticky key (a header, or the
-- client's key itself, hashed, never kept), its size in tokens (estimated
-- from its bytes) and the answer's limit.
local function plan_info(alias, j)
  local sticky, key = alias.sticky, nil
  -- Only sticky routing and the cost strategy read it.
  if not sticky and alias.strategy ~= "cost" then return nil end
  if sticky then
    if sticky.header then
      key = request.get_header(sticky.header)
    else
      key = request.get_header("authorization") or request.get_header("x-api-key")
    end
  end
  local mt = j.max_tokens
  return { sticky_key = key, prompt_tokens = #request.get_body() / 4,
           max_tokens = type(mt) == "number" and mt or nil }
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

  local routes = {}
  local prefixes = { "" }
  if conf.api_prefix then prefixes[2] = conf.api_prefix end
  for _, pre in ipairs(prefixes) do
    for path, r in pairs(DEFAULT_ROUTES) do
      routes[pre .. path] = r
      routes[pre .. path:sub(4)] = r          -- without /v1
    end
  end
  for i, r in ipairs(conf.routes) do
    if r.adapter then
      local a, streams = load_adapter(r.adapter)
      routes[r.path] = { client = a, streams = streams, endpoint = "chat/completions", method = r.method }
    else
      -- A route pinned to a provider forwards the client's bytes to one
      -- path of it: only where that path does not depend on the model.
      local p = providers[r.provider]
      local ok, upath = true, nil
      if p.kind ~= "mock" then ok, upath = pcall(p.path, p, r.endpoint) end
      if p.kind ~= "mock" and (not ok or not upath or upath:find("//", 1, true)) then
        error(string.format("routes[%d]: provider '%s' (%s) has no fixed path for endpoint '%s'; " ..
                            "route requests to it by model instead", i, r.provider, p.kind, r.endpoint), 0)
      end
      routes[r.path] = { endpoint = r.endpoint, method = r.method, provider = p, upath = upath }
    end
  end

  local pick = memo_picker(conf, providers)
  -- Aliases go through the balancer: per-target state in the shared zone
  -- aigw_routing (config.lua declares it), so every worker sees it.
  local checked = {}
  for name, p in pairs(conf.providers) do checked[name] = p.health_check ~= nil end
  local routing = balancer.new(conf.models, { zone = shared.aigw_routing, prices = conf.prices,
                                              explore = conf.routing and conf.routing.explore,
                                              checked = checked })
  local groups = routing.groups
  local serve_admin = admin.new(conf, routing)
  health.start(conf, providers, routing)
  local models, models_by_id = model_index(conf)
  -- GET .../models/{id}: the model ids may hold '/', so the rest of the path
  -- after a models route is the id (percent-decoded).
  local model_prefixes = {}
  for path, r in pairs(routes) do
    if r.models then model_prefixes[#model_prefixes + 1] = path .. "/" end
  end
  local function model_path(path)
    for _, pre in ipairs(model_prefixes) do
      if path:sub(1, #pre) == pre and #path > #pre then
        return request.unescape_uri(path:sub(#pre + 1))
      end
    end
  end

  local phases = by_phase(chain)
  for _, p in ipairs(phases.init_worker) do
    local ok, err = pcall(p.fn, p.conf)
    if not ok then error("plugin " .. p.name .. ": init_worker: " .. tostring(err), 0) end
  end
  local access, upstream = phases.access, phases.upstream
  local naccess, nupstream = #access, #upstream
  local failover_env

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
  failover_env = { conf = conf, providers = providers, upstream = run_upstream, random = math.random }

  local route_request     -- what follows the access phase, below

  local function handler(ctx)
    ctx.config = conf
    -- The admin listener has its own keys and rules (aigw.admin), decided
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

  route_request = function(ctx)
    local path = request.get_path()
    local method = request.get_method()
    local route = routes[path]
    if not route then
      local id = model_path(path)
      if id then
        if method ~= "GET" and method ~= "HEAD" then
          return errors.response(405, "method_not_allowed", "method " .. method .. " is not allowed on " .. path,
                                 "Allow: GET, HEAD\r\n")
        end
        local m = models_by_id[id]
        if not m then return errors.response(404, "model_not_found", "model '" .. id .. "' is not configured") end
        return 200, cjson.encode(m) .. "\n", "Content-Type: application/json\r\n"
      end
      return errors.response(404, "not_found", "no such endpoint: " .. path)
    end
    if method ~= route.method then
      return errors.response(405, "method_not_allowed",
                             "method " .. method .. " is not allowed on " .. path,
                             "Allow: " .. route.method .. "\r\n")
    end
    if route.models then
      return 200, cjson.encode({ object = "list", data = models }) .. "\n", "Content-Type: application/json\r\n"
    end

    local provider = route.provider
    if provider then
      -- A configured route to one provider: the client's bytes as they are.
      if provider.kind == "mock" then
        local json, err = request.get_json(ctx)
        if not json then return errors.response(400, "invalid_json", err) end
        return provider:serve(ctx, route.endpoint, nil, json)
      end
      ctx.provider = provider.name
      return run_upstream(ctx, "proxy", provider.target, route.upath, nil, nil)
    end
    -- Routing reads a few members; the body is decoded whole only where
    -- it has to be (translation, adapters, plugins that ask).
    local json, err, not_object = request.get_json_fields(ctx)
    if not json then return errors.response(400, not_object and "invalid_request" or "invalid_json", err) end
    if type(route.client) == "table" then
      -- A route adapter's format: its request becomes a chat request here.
      local oreq
      oreq, err = route.client.request(request.get_json(ctx), ctx)
      if not oreq then return errors.response(400, "invalid_request", tostring(err)) end
      if type(oreq) ~= "table" then
        error("route adapter for " .. path .. ": request() returned a " .. type(oreq) .. ", not a table", 0)
      end
      if oreq.stream == true and not route.streams then
        return errors.response(400, "invalid_request", "streaming is not supported on " .. path)
      end
      json = oreq
    end
    local model = json.model
    if type(model) ~= "string" or model == "" then
      return errors.response(400, "missing_model", "the request body has no 'model'")
    end
    local group = groups[model]
    if group then
      return failover.serve(ctx, failover_env, route, conf.models[model], group, json, model,
                            plan_info(conf.models[model], json))
    end
    local upstream_model, lines
    provider, upstream_model, lines = pick(model)
    if not provider then
      if upstream_model == false then
        return errors.response(400, "invalid_model", "the model name has a control character or is longer than "
                               .. MODEL_MAX .. " bytes")
      end
      return errors.response(404, "model_not_found", "model '" .. model .. "' is not configured")
    end
    ctx.provider, ctx.model = provider.name, upstream_model
    response._response_lines(ctx, lines)
    if provider.kind == "mock" then
      return dispatch.mock(ctx, route, provider, json == ctx._fields and request.get_json(ctx) or json)
    end
    return run_upstream(ctx, dispatch.serve(ctx, route, provider, json, model, upstream_model, conf))
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
    local x = ctx._reply
    if x and from_upstream then status, head = x:head(status, head) end
    -- The core reads the head it gets back after more Lua has run (body
    -- filters): ctx keeps it alive.
    if #hf == 0 then
      ctx._head = head
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
    ctx._head = head
    return resp.status, head
  end

  -- err: the upstream failed mid-body (eof is true); plugins: some plugin
  -- asked for filter_body() (else only the runtime's filter runs); usage:
  -- for an answer the core only tapped, its "usage" member (one call).
  local bf = phases.body_filter
  -- A second result true: the response ends with this chunk (the reply
  -- ended the client's stream before the upstream's), see aigw.reply.
  out.body_filter = function(ctx, chunk, eof, err, plugins, usage)
    local x = ctx._reply
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
    ctx._chunk = chunk
    return chunk, ended
  end

  local lg = phases.log
  if #lg > 0 or next(groups) then
    out.log = function(ctx, status)
      ctx.status = status
      -- First the target's bookkeeping (its in-flight count must not stay
      -- up whatever fails next), then a stream cut short: the usage
      -- reported until then.
      if ctx._target then failover.finish(ctx, status) end
      if ctx._reply then ctx._reply:finish(false) end
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

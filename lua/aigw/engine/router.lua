-- aigw.engine.router -- where a request goes once the access phase is done: the
-- routes by path (the default endpoints, the config's routes: pinned to
-- one provider, or through a route adapter), the models list, and a model
-- name to its provider or, for an alias, to the balancer and failover.
--
--   local route_request, routing = router.new(conf, providers, upstream)
--   return route_request(ctx)   -- a response (status, body, headers), or a
--                               -- proxy decision through upstream(ctx, ...)
--
-- upstream is the runtime's upstream phase (plugins that see ctx.upstream);
-- routing is the balancer the aliases go through (admin and health read
-- it). new raises, with the config's words, for a route that cannot be
-- served. Nothing per request lives here: per-request state is ctx.

local request = require "aigw.request"
local errors = require "aigw.errors"
local cjson = require "cjson"
local dispatch = require "aigw.engine.dispatch"
local response = require "aigw.response"
local balancer = require "aigw.engine.balancer"
local failover = require "aigw.engine.failover"
local adapters = require "aigw.engine.adapters"
local shared = require "aigw.shared"

local find = string.find

local M = {}

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

function M.new(conf, providers, run_upstream)
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
      local a, streams = adapters.load(r.adapter)
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

  local failover_env = { conf = conf, providers = providers, upstream = run_upstream, random = math.random }

  local function route_request(ctx)
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
      return dispatch.mock(ctx, route, provider, json == ctx._engine.fields and request.get_json(ctx) or json)
    end
    return run_upstream(ctx, dispatch.serve(ctx, route, provider, json, model, upstream_model, conf))
  end
  return route_request, routing
end

return M

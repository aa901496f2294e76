-- aigw.runtime -- what a worker VM runs: it loads the config, plugins and
-- providers once (init_worker), and hands the C core a request handler.
--
-- The handler runs in the request's own coroutine with the request's ctx
-- table. It calls every plugin's access phase in priority order (a plugin
-- answers early by returning status, body, headers), then routes: the
-- path picks an endpoint, the body's model (or the route) picks a provider,
-- and the provider either answers (mock) or returns a proxy decision that
-- the C core carries out. Nothing per request lives in this module.

local config = require "aigw.config"
local plugins_loader = require "aigw.plugins"
local request = require "aigw.request"
local errors = require "aigw.errors"
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"

local M = {}

-- Inbound endpoints served by default, by path: the provider endpoint
-- they map to and the method they take.
local DEFAULT_ROUTES = {
  ["/v1/chat/completions"] = { endpoint = "chat/completions", method = "POST" },
  ["/chat/completions"]    = { endpoint = "chat/completions", method = "POST" },
  ["/v1/models"]           = { models = true, method = "GET" },
  ["/models"]              = { models = true, method = "GET" },
}

local function build_providers(conf)
  local out = {}
  for name, p in pairs(conf.providers) do
    local kind = p.kind == "openai-compatible" and "openai" or p.kind
    out[name] = require("aigw.providers." .. kind).new(name, p)
  end
  return out
end

local function models_list(providers)
  local data = { { id = "echo", object = "model", created = 0, owned_by = "aigw" } }
  return 200, cjson.encode({ object = "list", data = data }), "Content-Type: application/json\r\n"
end

-- Replaces the top-level "model" value in the raw body, leaving every other
-- byte as the client sent it: a decode/encode round trip through lua-cjson
-- would turn [] into {} and cut numbers to 14 digits. A small scanner walks
-- the JSON text (strings skipped, depth counted) to find the key at depth 1,
-- so a "model" inside metadata or a tool schema is never touched. Returns
-- nil when there is no such string value (the caller then re-encodes).
local byte, find, sub = string.byte, string.find, string.sub

local function top_level_model(body)
  local depth, i = 0, 1
  while true do
    local s = find(body, '[{}%[%]"]', i)
    if not s then return nil end
    local c = byte(body, s)
    if c == 34 then                      -- a string: find its end
      local j = s + 1
      local q
      while true do
        q = find(body, '["\\]', j)
        if not q then return nil end
        if byte(body, q) == 92 then j = q + 2 else break end
      end
      if depth == 1 and q - s == 6 and sub(body, s + 1, q - 1) == "model" then
        local _, colon = find(body, "^%s*:%s*", q + 1)
        if colon then                    -- it is the key: its value follows
          local vs = colon + 1
          if byte(body, vs) ~= 34 then return nil end
          local k = vs + 1
          while true do
            local e = find(body, '["\\]', k)
            if not e then return nil end
            if byte(body, e) == 92 then k = e + 2 else return vs, e end
          end
        end
      end
      i = q + 1
    else
      depth = depth + ((c == 123 or c == 91) and 1 or -1)
      i = s + 1
    end
  end
end

local function replace_model(body, model, new)
  local vs, ve = top_level_model(body)
  if not vs or cjson_safe.decode(sub(body, vs, ve)) ~= model then return nil end
  return sub(body, 1, vs - 1) .. cjson.encode(new) .. sub(body, ve + 1)
end
M._replace_model = replace_model   -- for spec/runtime_spec.lua

-- Picks the provider for a model name: `echo`, `provider/model`, or the
-- default OpenAI provider. Returns provider, model name to send upstream.
local function pick_provider(providers, model)
  if model == "echo" then return providers.mock, model end
  local prefix, rest = model:match("^([^/]+)/(.+)$")
  if prefix and providers[prefix] then return providers[prefix], rest end
  return providers.openai, model
end

-- The admin listener serves its own endpoints, never the API.
local function admin(path)
  if path == "/status" then
    return 200, cjson.encode({ version = aigw_core.version, worker = aigw_core.worker_id() }),
           "Content-Type: application/json\r\n"
  end
  return errors.response(404, "not_found", "no such admin endpoint: " .. path)
end

function M.init_worker(conf_path, worker_id)
  local conf = config.load(conf_path)
  local prefix = aigw_core.prefix
  local chain = plugins_loader.load(prefix, conf.plugins, conf)
  local providers = build_providers(conf)

  local routes = {}
  for path, r in pairs(DEFAULT_ROUTES) do routes[path] = r end
  for _, r in ipairs(conf.routes) do
    routes[r.path] = { endpoint = r.endpoint, method = r.method, provider = providers[r.provider] }
  end

  local access, log = {}, {}
  for _, p in ipairs(chain) do
    if p.plugin.access then access[#access + 1] = p end
    if p.plugin.log then log[#log + 1] = p end
  end
  local naccess = #access

  local function handler(ctx)
    ctx.config = conf
    for i = 1, naccess do
      local p = access[i]
      local status, body, headers = p.plugin.access(p.conf, ctx)
      if status then
        if type(body) == "table" then
          body = cjson.encode(body)
          headers = "Content-Type: application/json\r\n" .. (headers or "")
        end
        return status, body or "", headers
      end
    end

    local path = request.get_path()
    if request.is_admin() then return admin(path) end
    local route = routes[path]
    if not route then
      return errors.response(404, "not_found", "no such endpoint: " .. path)
    end
    local method = request.get_method()
    if method ~= route.method then
      return errors.response(405, "method_not_allowed",
                             "method " .. method .. " is not allowed on " .. path,
                             "Allow: " .. route.method .. "\r\n")
    end
    if route.models then return models_list(providers) end

    local provider, body, json = route.provider, nil, nil
    if not provider then
      local err
      json, err = request.get_json(ctx)
      if not json then return errors.response(400, "invalid_json", err) end
      local model = json.model
      if type(model) ~= "string" or model == "" then
        return errors.response(400, "missing_model", "the request body has no 'model'")
      end
      local upstream_model
      provider, upstream_model = pick_provider(providers, model)
      if not provider then
        return errors.response(404, "model_not_found", "model '" .. model .. "' is not configured")
      end
      if upstream_model ~= model then
        body = replace_model(request.get_body(), model, upstream_model)
        if not body then
          json.model = upstream_model
          body = cjson.encode(json)
        end
      end
      ctx.provider, ctx.model = provider.name, upstream_model
    elseif provider.kind == "mock" then
      local err
      json, err = request.get_json(ctx)
      if not json then return errors.response(400, "invalid_json", err) end
    end
    return provider:serve(ctx, route.endpoint, body, json)
  end

  local log_handler
  if #log > 0 then
    log_handler = function(ctx, status)
      ctx.status = status
      for i = 1, #log do
        local ok, err = pcall(log[i].plugin.log, log[i].conf, ctx)
        if not ok then require("aigw.log").error("plugin ", log[i].plugin.name, " log: ", err) end
      end
    end
  end
  return handler, log_handler
end

return M

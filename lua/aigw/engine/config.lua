-- aigw.engine.config -- loads a config file and checks every field.
--
-- load(path) returns the normalised table (sizes in bytes, durations in
-- seconds, every default filled in) or raises one line: "file:line: what"
-- for Lua errors, "file: field.path: what was expected, got what" for bad
-- values. The same function runs in `aigw check`, in the C core's loader and
-- in every worker VM, so they can never disagree.

local M = {}

local SIZE_UNITS = { [""] = 1, b = 1, k = 1024, kb = 1024, m = 1024 ^ 2, mb = 1024 ^ 2,
                     g = 1024 ^ 3, gb = 1024 ^ 3 }

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function fail(file, field, expected, got)
  error(string.format("%s: %s: expected %s, got %s", file, field, expected, show(got)), 0)
end

-- Larger sizes and durations are nonsense, and the core keeps them in
-- integers: a value past these is refused, never cast.
local SIZE_MAX = 2 ^ 50                -- 1 PiB
local DURATION_MAX = 365 * 24 * 3600   -- a year, in seconds

-- "10m", "512k", 1048576 -> bytes
function M.parse_size(v)
  if type(v) == "number" then
    if v >= 0 and v <= SIZE_MAX and v == math.floor(v) then return v end
    return nil
  end
  if type(v) ~= "string" then return nil end
  local num, unit = v:lower():match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  if not num or not SIZE_UNITS[unit] then return nil end
  local n = math.floor(tonumber(num) * SIZE_UNITS[unit])
  if n > SIZE_MAX then return nil end
  return n
end

-- 10, "10s", "500ms", "2m" -> seconds
function M.parse_duration(v)
  if type(v) == "number" then return v >= 0 and v <= DURATION_MAX and v or nil end
  if type(v) ~= "string" then return nil end
  local num, unit = v:lower():match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  local scale = ({ [""] = 1, s = 1, ms = 0.001, m = 60, h = 3600 })[unit or ""]
  if not num or not scale then return nil end
  local d = tonumber(num) * scale
  if d > DURATION_MAX then return nil end
  return d
end

local SERVER_DEFAULTS = {
  max_body_size = 10 * 1024 * 1024,
  max_header_size = 32 * 1024,
  max_connections = 10000,
  client_header_timeout = 10,
  client_body_timeout = 30,
  -- the whole body, however steadily it trickles in
  client_body_total_timeout = 120,
  -- every request body being read or held, all workers together
  max_buffered_bodies = 512 * 1024 * 1024,
  keepalive_timeout = 75,
  send_timeout = 30,
  drain_timeout = 10,
  -- Lua that runs this long without returning to the loop is stopped
  -- (interpreted code: an error in that request); past lua_kill_after the
  -- process aborts (code that cannot be interrupted). 0 disables each.
  lua_time_limit = 2,
  lua_kill_after = 30,
  -- Plugin files run interpreted (so the limit above can stop their loops)
  -- unless this is true: compiled plugin code is faster, but a runaway loop
  -- in it is only bounded by lua_kill_after.
  plugin_jit = false,
}
local SERVER_SIZES = { max_body_size = true, max_header_size = true, max_buffered_bodies = true }

local PROVIDER_KINDS = { openai = true, ["openai-compatible"] = true, ["azure-openai"] = true,
                         anthropic = true, gemini = true, mock = true }
local KINDS_TEXT = "one of openai, openai-compatible, azure-openai, anthropic, gemini, mock"

-- Fields only some kinds take, with their checks.
local KIND_FIELDS = {
  anthropic = {
    -- the anthropic-version header
    version = function(v)
      return type(v) == "string" and v:match("^[%w.-]+$") and v, "a version like \"2023-06-01\""
    end,
    -- max_tokens for requests that have none (Anthropic requires it)
    max_tokens = function(v)
      return type(v) == "number" and v >= 1 and v == math.floor(v) and v, "a whole number >= 1"
    end,
  },
  ["azure-openai"] = {
    api_version = function(v)
      return type(v) == "string" and v:match("^[%w.-]+$") and v, "an api-version like \"2024-10-21\""
    end,
    -- model name -> deployment name (a model not listed is its own deployment)
    deployments = function(v)
      if type(v) ~= "table" then return nil, "a table of model = deployment" end
      for k, d in pairs(v) do
        if type(k) ~= "string" or type(d) ~= "string" or not d:match("^[%w._-]+$") then
          return nil, "a table of model = deployment (letters, digits, '.', '_', '-')"
        end
      end
      return v
    end,
  },
}
local KIND_DEFAULTS = {
  anthropic = { version = "2023-06-01", max_tokens = 4096 },
  ["azure-openai"] = { api_version = "2024-10-21", deployments = {} },
}

local TOP_FIELDS = {
  listen = true, admin_listen = true, workers = true, log_level = true, log_format = true,
  api_keys = true, admin_keys = true,
  server = true, shared = true, plugins = true, providers = true, routes = true, models = true,
  pid_file = true, watch = true, redis = true, api_prefix = true, prices = true, routing = true,
}

-- Four decimal octets as the core's parser (inet_pton) takes them: each
-- 0-255, without leading zeros.
local function ipv4(host)
  local n = 0
  for o in (host .. "."):gmatch("(%d+)%.") do
    if #o > 1 and o:sub(1, 1) == "0" or tonumber(o) > 255 then return false end
    n = n + 1
  end
  return n == 4
end

local function check_listen(file, field, v)
  local host = type(v) == "string" and (v:match("^(%d+%.%d+%.%d+%.%d+):%d+$") or v:match("^%[([%x:.]+)%]:%d+$")
                                       or v:match("^(localhost):%d+$") or v:match("^(%*?):%d+$"))
  if not host or (host:find("^%d") and not ipv4(host)) then
    fail(file, field, 'an IP address and port like "127.0.0.1:8080" or "[::1]:8080"', v)
  end
  local port = tonumber(v:match(":(%d+)$"))
  if port > 65535 then fail(file, field, "a port up to 65535", v) end
  return v
end

-- Whether two listen addresses would take the same port. Every listener is
-- bound with SO_REUSEPORT (workers share it), so the kernel would let a
-- second one bind the port silently and spread connections over both: the
-- admin listener would answer part of the client traffic. A wildcard host
-- overlaps every host.
local WILDCARD = { [""] = true, ["*"] = true, ["0.0.0.0"] = true, ["::"] = true }
local function listen_host_port(v)
  local host, port = v:match("^%[?(.-)%]?:(%d+)$")
  if host == "localhost" then host = "127.0.0.1" end
  return host, tonumber(port)
end
local function listens_overlap(a, b)
  local ha, pa = listen_host_port(a)
  local hb, pb = listen_host_port(b)
  return pa == pb and pa ~= 0 and (ha == hb or WILDCARD[ha] or WILDCARD[hb])
end

-- Admin keys: what the admin listener's paths other than /metrics take
-- (see aigw.engine.admin). `aigw reload` sends one in a header line, hence visible
-- ASCII only. Errors never show a key.
local function check_admin_keys(file, v, api_keys)
  if v == nil then return {} end
  if type(v) == "string" then
    local t = {}
    for k in v:gmatch("[^,%s]+") do t[#t + 1] = k end
    v = t
  end
  if type(v) ~= "table" then fail(file, "admin_keys", "a list of keys or one string of them", v) end
  local out = {}
  for i, k in ipairs(v) do
    local field = "admin_keys[" .. i .. "]"
    if type(k) ~= "string" then fail(file, field, "a key of visible ASCII characters", k) end
    if k == "" or k:find("[^\33-\126]") then
      error(string.format("%s: %s: expected a key of visible ASCII characters, got %s", file, field,
                          k == "" and "an empty string" or "a string with other bytes"), 0)
    end
    -- A gateway key that opened the admin endpoints would make every
    -- client an operator.
    for j, d in ipairs(api_keys) do
      if d == k then
        error(string.format("%s: %s: expected a key that is not also a gateway key, got api_keys[%d]",
                            file, field, j), 0)
      end
    end
    out[i] = k
  end
  return out
end

local function check_server(file, s)
  if s == nil then s = {} end
  if type(s) ~= "table" then fail(file, "server", "a table", s) end
  local out = {}
  for k in pairs(s) do
    if SERVER_DEFAULTS[k] == nil then fail(file, "server." .. tostring(k), "a known field", k) end
  end
  for k, default in pairs(SERVER_DEFAULTS) do
    local v = s[k]
    if v == nil then
      out[k] = default
    elseif SERVER_SIZES[k] then
      out[k] = M.parse_size(v) or fail(file, "server." .. k, 'a size like "10m"', v)
    elseif k == "plugin_jit" then
      if type(v) ~= "boolean" then fail(file, "server." .. k, "true or false", v) end
      out[k] = v
    elseif k == "max_connections" then
      if type(v) ~= "number" or v < 1 or v > 10000000 or v ~= math.floor(v) then
        fail(file, "server." .. k, "a whole number from 1 to 10000000", v)
      end
      out[k] = v
    else
      out[k] = M.parse_duration(v) or fail(file, "server." .. k, "a duration in seconds", v)
    end
  end
  -- Offsets into a request head are 32-bit and a body is held whole: the
  -- limits stay far below what would overflow them.
  if out.max_header_size < 1024 or out.max_header_size > 1024 * 1024 then
    fail(file, "server.max_header_size", "a size from 1k to 1m", s.max_header_size)
  end
  if out.max_body_size > 1024 * 1024 * 1024 then
    fail(file, "server.max_body_size", "a size up to 1g", s.max_body_size)
  end
  if out.max_buffered_bodies < out.max_body_size then
    fail(file, "server.max_buffered_bodies", "at least max_body_size (" .. out.max_body_size .. ")",
         s.max_buffered_bodies or out.max_buffered_bodies)
  end
  return out
end

local function check_timeouts(file, field, t)
  local out = { connect = 10, read = 300, total = 600 }
  if t == nil then return out end
  if type(t) ~= "table" then fail(file, field, "a table", t) end
  for k, v in pairs(t) do
    if out[k] == nil then fail(file, field .. "." .. tostring(k), "connect, read or total", k) end
    out[k] = M.parse_duration(v) or fail(file, field .. "." .. k, "a duration in seconds", v)
  end
  return out
end

-- An active health check: a request sent every `interval` seconds; after
-- `unhealthy` failures in a row the provider's targets take no traffic,
-- after `healthy` successes in a row they do again.
local HEALTH_DEFAULTS = { method = "GET", interval = 10, timeout = 5, healthy = 2, unhealthy = 3 }

local function check_health(file, field, h)
  if type(h) ~= "table" then fail(file, field, 'a table { path = "/models", ... }', h) end
  for k in pairs(h) do
    if k ~= "path" and k ~= "body" and HEALTH_DEFAULTS[k] == nil then
      fail(file, field .. "." .. tostring(k), "one of path, method, body, interval, timeout, healthy, unhealthy", k)
    end
  end
  local out = { method = HEALTH_DEFAULTS.method, interval = HEALTH_DEFAULTS.interval,
                timeout = HEALTH_DEFAULTS.timeout, healthy = HEALTH_DEFAULTS.healthy,
                unhealthy = HEALTH_DEFAULTS.unhealthy }
  if type(h.path) ~= "string" or h.path:sub(1, 1) ~= "/" then
    fail(file, field .. ".path", "a path starting with /", h.path)
  end
  out.path = h.path
  if h.method ~= nil then
    if type(h.method) ~= "string" or not h.method:match("^%a+$") then
      fail(file, field .. ".method", "an HTTP method", h.method)
    end
    out.method = h.method:upper()
  end
  if type(h.body) == "table" then
    local body, err = require("aigw.json").encode(h.body)
    if not body then
      fail(file, field .. ".body", "a string or a table JSON can hold (" .. tostring(err) .. ")", h.body)
    end
    out.body = body
  elseif h.body ~= nil then
    if type(h.body) ~= "string" then fail(file, field .. ".body", "a string or a table", h.body) end
    out.body = h.body
  end
  for _, k in ipairs({ "interval", "timeout" }) do
    if h[k] ~= nil then
      local d = M.parse_duration(h[k])
      if not d or d <= 0 then fail(file, field .. "." .. k, "a duration in seconds, more than 0", h[k]) end
      out[k] = d
    end
  end
  for _, k in ipairs({ "healthy", "unhealthy" }) do
    if h[k] ~= nil then
      if type(h[k]) ~= "number" or h[k] < 1 or h[k] ~= math.floor(h[k]) then
        fail(file, field .. "." .. k, "a whole number >= 1", h[k])
      end
      out[k] = h[k]
    end
  end
  return out
end

-- Model names are echoed in response headers (x-aigw-model): held to the
-- limits the runtime holds clients' names to (runtime.lua).
local MODEL_NAME = "a model name (at most 256 bytes, no control characters)"
local function model_name(v)
  return type(v) == "string" and v ~= "" and #v <= 256 and not v:find("[%z\1-\31\127]")
end

local function check_provider(file, name, p)
  local field = "providers." .. tostring(name)
  if type(name) ~= "string" or not name:match("^[%w_.-]+$") then
    fail(file, field, "a provider name of letters, digits, '_', '.' or '-'", name)
  end
  if type(p) ~= "table" then fail(file, field, "a table", p) end
  if not PROVIDER_KINDS[p.kind] then fail(file, field .. ".kind", KINDS_TEXT, p.kind) end
  local known = { kind = true, base_url = true, api_key = true, ca_file = true, tls_verify = true,
                  timeouts = true, keepalive = true, headers = true, models = true, health_check = true }
  local extra = KIND_FIELDS[p.kind] or {}
  for k in pairs(p) do
    if not known[k] and not extra[k] then
      local names = { "kind", "base_url", "api_key", "ca_file", "tls_verify", "timeouts", "keepalive",
                      "headers", "models", "health_check" }
      for e in pairs(extra) do names[#names + 1] = e end
      fail(file, field .. "." .. tostring(k), "one of " .. table.concat(names, ", "), k)
    end
  end
  local out = { name = name, kind = p.kind }
  for k, def in pairs(KIND_DEFAULTS[p.kind] or {}) do out[k] = def end
  for k, check in pairs(extra) do
    if p[k] ~= nil then
      local v, want = check(p[k])
      if not v then fail(file, field .. "." .. k, want, p[k]) end
      out[k] = v
    end
  end
  if p.models ~= nil then
    -- An allow-list: the models this provider may be asked for.
    if type(p.models) ~= "table" then fail(file, field .. ".models", "a list of model names", p.models) end
    out.models = {}
    for i, m in ipairs(p.models) do
      if not model_name(m) then fail(file, field .. ".models[" .. i .. "]", MODEL_NAME, m) end
      out.models[i] = m
    end
  end
  if p.health_check ~= nil then out.health_check = check_health(file, field .. ".health_check", p.health_check) end
  if p.kind ~= "mock" then
    if type(p.base_url) ~= "string" or not p.base_url:match("^https?://[^/]") then
      fail(file, field .. ".base_url", "an http:// or https:// URL", p.base_url)
    end
    out.base_url = p.base_url
    if p.api_key ~= nil and (type(p.api_key) ~= "string") then
      fail(file, field .. ".api_key", "a string", "a " .. type(p.api_key))
    end
    out.api_key = p.api_key ~= "" and p.api_key or nil
    if p.ca_file ~= nil and type(p.ca_file) ~= "string" then fail(file, field .. ".ca_file", "a path", p.ca_file) end
    out.ca_file = p.ca_file
    if p.tls_verify ~= nil and type(p.tls_verify) ~= "boolean" then
      fail(file, field .. ".tls_verify", "true or false", p.tls_verify)
    end
    out.tls_verify = p.tls_verify ~= false
    out.timeouts = check_timeouts(file, field .. ".timeouts", p.timeouts)
    local ka = p.keepalive or {}
    if type(ka) ~= "table" then fail(file, field .. ".keepalive", "a table", ka) end
    out.keepalive = {
      max_idle = ka.max_idle == nil and 64 or ka.max_idle,
      idle_timeout = ka.idle_timeout == nil and 60 or M.parse_duration(ka.idle_timeout),
    }
    if type(out.keepalive.max_idle) ~= "number" or out.keepalive.max_idle < 0 then
      fail(file, field .. ".keepalive.max_idle", "a number >= 0", ka.max_idle)
    end
    if not out.keepalive.idle_timeout then
      fail(file, field .. ".keepalive.idle_timeout", "a duration in seconds", ka.idle_timeout)
    end
    if p.headers ~= nil then
      if type(p.headers) ~= "table" then fail(file, field .. ".headers", "a table of strings", p.headers) end
      for k, v in pairs(p.headers) do
        if type(k) ~= "string" or type(v) ~= "string" then
          fail(file, field .. ".headers", "a table of strings", v)
        end
      end
      out.headers = p.headers
    end
  end
  return out
end

local function check_plugins(file, list)
  if list == nil then return { { name = "key-auth", config = {} } } end
  if type(list) ~= "table" then fail(file, "plugins", "a list of plugin names", list) end
  local out = {}
  for i, p in ipairs(list) do
    local field = "plugins[" .. i .. "]"
    if type(p) == "string" then
      out[i] = { name = p, config = {} }
    elseif type(p) == "table" and type(p.name) == "string" then
      if p.config ~= nil and type(p.config) ~= "table" then fail(file, field .. ".config", "a table", p.config) end
      out[i] = { name = p.name, config = p.config or {} }
    else
      fail(file, field, "a plugin name or { name = ..., config = { ... } }", p)
    end
    if not out[i].name:match("^[%w_-]+$") then fail(file, field, "a plugin name", out[i].name) end
  end
  return out
end

local function check_routes(file, routes, providers)
  local out = {}
  if routes == nil then return out end
  if type(routes) ~= "table" then fail(file, "routes", "a list of routes", routes) end
  for i, r in ipairs(routes) do
    local field = "routes[" .. i .. "]"
    if type(r) ~= "table" then fail(file, field, "a table", r) end
    if type(r.path) ~= "string" or r.path:sub(1, 1) ~= "/" then
      fail(file, field .. ".path", "a path starting with /", r.path)
    end
    if r.provider ~= nil and not providers[r.provider] then
      fail(file, field .. ".provider", "the name of a configured provider", r.provider)
    end
    if r.endpoint ~= nil and type(r.endpoint) ~= "string" then
      fail(file, field .. ".endpoint", "a string", r.endpoint)
    end
    if r.method ~= nil and (type(r.method) ~= "string" or not r.method:match("^%a+$")) then
      fail(file, field .. ".method", "an HTTP method", r.method)
    end
    -- adapter: adapters/<name>.lua, which turns the route's own request
    -- and answer formats into chat completions (aigw.engine.adapters).
    -- Or a dotted name: a Lua module on the package path (lua/, plugins/).
    if r.adapter ~= nil and (type(r.adapter) ~= "string" or not (r.adapter:match("^[%w_-]+$")
                             or r.adapter:match("^[%a_][%w_]*%.[%w_.-]*[%w_-]$"))) then
      fail(file, field .. ".adapter", "the name of a route adapter (adapters/<name>.lua, or a Lua module)",
           r.adapter)
    end
    if r.adapter and r.provider then fail(file, field, "either adapter or provider, not both", r.provider) end
    out[i] = { path = r.path, provider = r.provider, endpoint = r.endpoint or "chat/completions",
               method = (r.method or "POST"):upper(), adapter = r.adapter }
  end
  return out
end

-- redis = { url = "redis://[[user]:password@]host[:port][/db]",
--           connect_timeout = 1, timeout = 1 }; url nil or "": not configured.
local REDIS_DEFAULTS = { connect_timeout = 1, timeout = 1 }

-- A URL for messages, with any password hidden.
local function redis_url_shown(url)
  return (url:gsub("^(%a+://)[^@/]*@", "%1***@"))
end

-- What is wrong with a Redis URL, or nil. The C parser decides when it is
-- there (worker VMs, aigw check); a plain Lua VM gets a shape check.
local function redis_url_problem(url)
  if aigw_core and aigw_core.redis_check_url then return aigw_core.redis_check_url(url) end
  if not url:lower():match("^redis://[^/?#]*[^@/?#:]") then return "expected a redis:// URL" end
  return nil
end

local function check_redis(file, r)
  local out = { connect_timeout = REDIS_DEFAULTS.connect_timeout, timeout = REDIS_DEFAULTS.timeout }
  if r == nil then return out end
  if type(r) ~= "table" then fail(file, "redis", "a table { url = ..., timeout = ... }", r) end
  for k in pairs(r) do
    if k ~= "url" and REDIS_DEFAULTS[k] == nil then
      fail(file, "redis." .. tostring(k), "one of url, connect_timeout, timeout", k)
    end
  end
  if r.url ~= nil and r.url ~= "" then
    if type(r.url) ~= "string" then fail(file, "redis.url", 'a URL like "redis://127.0.0.1:6379/0"', r.url) end
    local why = redis_url_problem(r.url)
    if why then
      fail(file, "redis.url", "redis://[[user]:password@]host[:port][/db] (" .. why .. ")",
           redis_url_shown(r.url))
    end
    out.url = r.url
  end
  for k in pairs(REDIS_DEFAULTS) do
    if r[k] ~= nil then
      local d = M.parse_duration(r[k])
      if not d or d <= 0 then fail(file, "redis." .. k, "a duration in seconds, more than 0", r[k]) end
      out[k] = d
    end
  end
  return out
end

-- Model aliases: one name standing for targets (provider + model), the
-- strategy that orders them per request, and the retry and circuit-breaker
-- rules the runtime applies. `routing` holds defaults for every alias; an
-- alias's own retry and breaker fields override them key by key.

local ROUTING_ZONE_SIZE = 1024 * 1024
local STRATEGIES = { weighted = true, ["round-robin"] = true, ["least-busy"] = true,
                     ["lowest-latency"] = true, cost = true, priority = true }
local STRATEGIES_TEXT = "one of weighted, round-robin, least-busy, lowest-latency, cost, priority"
local RETRY_CLASSES = { connect = true, timeout = true, ["429"] = true, ["5xx"] = true,
                        context_length = true, ["4xx"] = true }
local RETRY_CLASSES_TEXT = "a list of connect, timeout, 429, 5xx, context_length, 4xx"
local RETRY_DEFAULTS = { on = { connect = true, timeout = true, ["429"] = true, ["5xx"] = true },
                         backoff = 0.1, max_backoff = 2, max_retry_after = 30 }
local RETRY_DURATIONS = { backoff = true, max_backoff = true, deadline = true, max_retry_after = true }
local BREAKER_DEFAULTS = { failures = 5, error_rate = 0.5, window = 30, min_requests = 10, cooldown = 30 }
local ALIAS_FIELDS = { strategy = true, select = true, sticky = true, targets = true, retry = true,
                       breaker = true, explore = true }
local TARGET_FIELDS = { provider = true, model = true, weight = true, priority = true,
                        ttfb_timeout = true, timeout = true }
-- The one-target form: the target's own fields (weight and priority mean
-- nothing alone) beside the alias's.
local SINGLE_FIELDS = { provider = true, model = true, ttfb_timeout = true, timeout = true }
for k in pairs(ALIAS_FIELDS) do SINGLE_FIELDS[k] = true end

local function known_fields(file, field, t, known, text)
  for k in pairs(t) do
    if not known[k] then fail(file, field .. "." .. tostring(k), text, k) end
  end
end

local function whole(v, min)
  return type(v) == "number" and v >= min and v == math.floor(v)
end

local function positive_duration(file, field, v)
  local d = M.parse_duration(v)
  if not d or d <= 0 then fail(file, field, "a duration in seconds, more than 0", v) end
  return d
end

-- A retry table checked and merged over `base` (nil fields keep base's).
local function check_retry(file, field, r, base)
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  out.on = {}
  for c in pairs(base.on) do out.on[c] = true end
  if r == nil then return out end
  if type(r) ~= "table" then fail(file, field, "a table { attempts = ..., on = { ... } }", r) end
  known_fields(file, field, r, { attempts = true, on = true, backoff = true, max_backoff = true,
                                 deadline = true, max_retry_after = true },
               "one of attempts, on, backoff, max_backoff, deadline, max_retry_after")
  if r.attempts ~= nil then
    if not whole(r.attempts, 1) then fail(file, field .. ".attempts", "a whole number >= 1", r.attempts) end
    out.attempts = r.attempts
  end
  if r.on ~= nil then
    if type(r.on) ~= "table" then fail(file, field .. ".on", RETRY_CLASSES_TEXT, r.on) end
    out.on = {}
    for i, c in ipairs(r.on) do
      if not RETRY_CLASSES[c] then fail(file, field .. ".on[" .. i .. "]", RETRY_CLASSES_TEXT, c) end
      out.on[c] = true
    end
  end
  for k in pairs(RETRY_DURATIONS) do
    if r[k] ~= nil then
      out[k] = M.parse_duration(r[k]) or fail(file, field .. "." .. k, "a duration in seconds", r[k])
    end
  end
  return out
end

-- A breaker table merged over `base`, or false (no breaker).
local function check_breaker(file, field, b, base)
  if b == false or (b == nil and not base) then return false end
  local out = {}
  for k, v in pairs(base or BREAKER_DEFAULTS) do out[k] = v end
  if b == nil then return out end
  if type(b) ~= "table" then fail(file, field, "a table { failures = ..., cooldown = ... } or false", b) end
  known_fields(file, field, b, BREAKER_DEFAULTS, "one of failures, error_rate, window, min_requests, cooldown")
  if b.failures ~= nil then
    if not whole(b.failures, 1) then fail(file, field .. ".failures", "a whole number >= 1", b.failures) end
    out.failures = b.failures
  end
  if b.min_requests ~= nil then
    if not whole(b.min_requests, 1) then fail(file, field .. ".min_requests", "a whole number >= 1", b.min_requests) end
    out.min_requests = b.min_requests
  end
  if b.error_rate ~= nil then
    local v = b.error_rate
    if type(v) ~= "number" or v <= 0 or v > 1 then
      fail(file, field .. ".error_rate", "a number above 0, up to 1", v)
    end
    out.error_rate = v
  end
  if b.window ~= nil then out.window = positive_duration(file, field .. ".window", b.window) end
  if b.cooldown ~= nil then out.cooldown = positive_duration(file, field .. ".cooldown", b.cooldown) end
  return out
end

local function check_explore(file, field, v)
  if type(v) ~= "number" or v < 0 or v > 1 then fail(file, field, "a number from 0 to 1", v) end
  return v
end

local function check_routing(file, r)
  local out = { retry = check_retry(file, "routing.retry", nil, RETRY_DEFAULTS),
                breaker = check_breaker(file, "routing.breaker", nil, BREAKER_DEFAULTS), explore = 0.05 }
  if r == nil then return out end
  if type(r) ~= "table" then fail(file, "routing", "a table { retry = ..., breaker = ..., explore = ... }", r) end
  known_fields(file, "routing", r, { retry = true, breaker = true, explore = true }, "one of retry, breaker, explore")
  out.retry = check_retry(file, "routing.retry", r.retry, RETRY_DEFAULTS)
  out.breaker = check_breaker(file, "routing.breaker", r.breaker, BREAKER_DEFAULTS)
  if r.explore ~= nil then out.explore = check_explore(file, "routing.explore", r.explore) end
  return out
end

local function check_target(file, field, t, i, providers)
  if not providers[t.provider] then
    fail(file, field .. ".provider", "the name of a configured provider", t.provider)
  end
  if not model_name(t.model) then fail(file, field .. ".model", MODEL_NAME, t.model) end
  local out = { provider = t.provider, model = t.model, weight = 1, priority = i,
                key = t.provider .. "/" .. t.model .. "#" .. i }
  if t.weight ~= nil then
    -- not (w > 0) rather than w <= 0, so that NaN is refused too
    if type(t.weight) ~= "number" or not (t.weight > 0) or t.weight == math.huge then  -- luacheck: ignore 581
      fail(file, field .. ".weight", "a number more than 0", t.weight)
    end
    out.weight = t.weight
  end
  if t.priority ~= nil then
    if type(t.priority) ~= "number" or t.priority ~= t.priority then
      fail(file, field .. ".priority", "a number", t.priority)
    end
    out.priority = t.priority
  end
  if t.ttfb_timeout ~= nil then out.ttfb_timeout = positive_duration(file, field .. ".ttfb_timeout", t.ttfb_timeout) end
  if t.timeout ~= nil then out.timeout = positive_duration(file, field .. ".timeout", t.timeout) end
  return out
end

local function check_sticky(file, field, s)
  if s == nil then return nil end
  local shape = '{ header = "x-session-id" } or { api_key = true }'
  if type(s) ~= "table" then fail(file, field, shape, s) end
  known_fields(file, field, s, { header = true, api_key = true }, "header or api_key")
  if s.header ~= nil and s.api_key ~= nil then fail(file, field, "either header or api_key, not both", s.header) end
  if s.header ~= nil then
    if type(s.header) ~= "string" or not s.header:match("^[%w!#$%%&'*+.^_`|~-]+$") then
      fail(file, field .. ".header", "a header name", s.header)
    end
    return { header = s.header:lower() }
  end
  if s.api_key ~= true then fail(file, field .. ".api_key", "true", s.api_key) end
  return { api_key = true }
end

-- One alias: `{ provider, model }` (one target) or `{ targets = { ... } }`,
-- both normalised to the same shape.
local function check_alias(file, alias, m, providers, routing)
  local f = "models." .. tostring(alias)
  if not model_name(alias) then
    fail(file, "models", "alias names that are model names (at most 256 bytes, no control characters)", alias)
  end
  if type(m) ~= "table" then fail(file, f, "a table { provider = ..., model = ... } or { targets = { ... } }", m) end
  local targets = {}
  if m.targets ~= nil then
    known_fields(file, f, m, ALIAS_FIELDS,
                 "one of targets, strategy, select, sticky, retry, breaker, explore")
    if type(m.targets) ~= "table" or #m.targets == 0 then
      fail(file, f .. ".targets", "a list of { provider = ..., model = ... }", m.targets)
    end
    for i, t in ipairs(m.targets) do
      local tf = f .. ".targets[" .. i .. "]"
      if type(t) ~= "table" then fail(file, tf, "a table { provider = ..., model = ... }", t) end
      known_fields(file, tf, t, TARGET_FIELDS, "one of provider, model, weight, priority, ttfb_timeout, timeout")
      targets[i] = check_target(file, tf, t, i, providers)
    end
  else
    known_fields(file, f, m, SINGLE_FIELDS, "one of provider, model, ttfb_timeout, timeout, targets, strategy, "
                 .. "select, sticky, retry, breaker, explore")
    targets[1] = check_target(file, f, m, 1, providers)
  end
  local out = { provider = targets[1].provider, model = targets[1].model, targets = targets,
                strategy = "weighted", explore = routing.explore }
  if m.select ~= nil then
    local sel = m.select
    if type(sel) == "string" then
      -- A module (plugins/<name>.lua, dots for directories): the strategy
      -- lives in its own file and a reload picks up its new code.
      local ok, mod = pcall(require, sel)
      if not ok then fail(file, f .. ".select", "a module that loads (" .. tostring(mod) .. ")", sel) end
      if type(mod) == "table" then mod = mod.select end
      if type(mod) ~= "function" then
        fail(file, f .. ".select", "a module returning a function (targets, ctx) or a table with one named select", sel)
      end
      sel = mod
    end
    if type(sel) ~= "function" then
      fail(file, f .. ".select", "a function (targets, ctx) or the name of a module with one", m.select)
    end
    if m.strategy ~= nil then fail(file, f .. ".strategy", "either strategy or select, not both", m.strategy) end
    -- Operator code, like a plugin's: interpreted, so the watchdog can stop
    -- a runaway loop in it.
    if jit then jit.off(sel, true) end
    out.strategy, out.select = "select", sel
  elseif m.strategy ~= nil then
    if not STRATEGIES[m.strategy] then fail(file, f .. ".strategy", STRATEGIES_TEXT, m.strategy) end
    out.strategy = m.strategy
  end
  out.sticky = check_sticky(file, f .. ".sticky", m.sticky)
  local base = {}
  for k, v in pairs(routing.retry) do base[k] = v end
  base.attempts = base.attempts or #targets
  out.retry = check_retry(file, f .. ".retry", m.retry, base)
  out.breaker = check_breaker(file, f .. ".breaker", m.breaker, routing.breaker)
  if m.explore ~= nil then out.explore = check_explore(file, f .. ".explore", m.explore) end
  return out
end

function M.normalise(file, conf)
  if type(conf) ~= "table" then
    error(string.format("%s: the config must return a table, got %s", file, type(conf)), 0)
  end
  for k in pairs(conf) do
    if not TOP_FIELDS[k] then fail(file, tostring(k), "a known field (see docs/configuration.md)", k) end
  end
  local out = {}
  local listen = conf.listen or "127.0.0.1:8080"
  if type(listen) == "string" then listen = { listen } end
  if type(listen) ~= "table" or #listen == 0 then fail(file, "listen", "an address or a list of them", conf.listen) end
  out.listen = {}
  for i, l in ipairs(listen) do out.listen[i] = check_listen(file, "listen", l) end
  for i = 2, #out.listen do
    for j = 1, i - 1 do
      if listens_overlap(out.listen[i], out.listen[j]) then
        fail(file, "listen[" .. i .. "]", "an address with a port no other listen address takes", out.listen[i])
      end
    end
  end
  if conf.admin_listen ~= nil and conf.admin_listen ~= false then
    out.admin_listen = check_listen(file, "admin_listen", conf.admin_listen)
    for _, l in ipairs(out.listen) do
      if listens_overlap(out.admin_listen, l) then
        fail(file, "admin_listen", "a port of its own (listen takes " .. l .. ")", out.admin_listen)
      end
    end
  end
  local workers = conf.workers
  if workers == nil or workers == "auto" then
    out.workers = 0
  elseif type(workers) == "number" and workers >= 1 and workers <= 256 and workers == math.floor(workers) then
    out.workers = workers
  else
    fail(file, "workers", '"auto" or a whole number from 1 to 256', workers)
  end
  local level = conf.log_level or "info"
  if not ({ debug = true, info = true, warn = true, error = true })[level] then
    fail(file, "log_level", "debug, info, warn or error", level)
  end
  out.log_level = level
  local log_format = conf.log_format or "text"
  if log_format ~= "text" and log_format ~= "json" then
    fail(file, "log_format", 'text or json', log_format)
  end
  out.log_format = log_format
  local keys = conf.api_keys or {}
  if type(keys) == "string" then
    local t = {}
    for k in keys:gmatch("[^,%s]+") do t[#t + 1] = k end
    keys = t
  end
  if type(keys) ~= "table" then fail(file, "api_keys", "a list of keys", keys) end
  out.api_keys = {}
  for i, k in ipairs(keys) do
    if type(k) ~= "string" or #k < 1 then fail(file, "api_keys[" .. i .. "]", "a non-empty string", k) end
    out.api_keys[i] = k
  end
  out.admin_keys = check_admin_keys(file, conf.admin_keys, out.api_keys)
  out.server = check_server(file, conf.server)
  if conf.pid_file ~= nil and (type(conf.pid_file) ~= "string" or conf.pid_file == "") then
    fail(file, "pid_file", "a file path", conf.pid_file)
  end
  out.pid_file = conf.pid_file
  if conf.watch ~= nil and type(conf.watch) ~= "boolean" then fail(file, "watch", "true or false", conf.watch) end
  out.watch = conf.watch == true
  if conf.api_prefix ~= nil then
    local p = conf.api_prefix
    if type(p) ~= "string" or not p:match("^/[%w%._~/%-]*[%w%._~%-]$") or p:find("//", 1, true) then
      fail(file, "api_prefix", 'a path prefix like "/api" (no trailing slash)', p)
    end
    out.api_prefix = p
  end
  out.shared = {}
  if conf.shared ~= nil then
    if type(conf.shared) ~= "table" then fail(file, "shared", "a table of zone = size", conf.shared) end
    for name, size in pairs(conf.shared) do
      if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") or #name > 64 then
        fail(file, "shared", "zone names that are Lua identifiers", name)
      end
      local bytes = M.parse_size(size)
      if not bytes or bytes < 4096 then fail(file, "shared." .. name, 'a size of at least 4k, like "8m"', size) end
      out.shared[name] = bytes
    end
  end
  out.plugins = check_plugins(file, conf.plugins)
  out.providers = {}
  if conf.providers ~= nil and type(conf.providers) ~= "table" then
    fail(file, "providers", "a table of name = { kind = ... }", conf.providers)
  end
  for name, p in pairs(conf.providers or {}) do out.providers[name] = check_provider(file, name, p) end
  if not out.providers.mock then out.providers.mock = { name = "mock", kind = "mock" } end
  out.routes = check_routes(file, conf.routes, out.providers)
  -- Aliases: a name clients send, standing for one or more targets.
  out.routing = check_routing(file, conf.routing)
  out.models = {}
  if conf.models ~= nil then
    if type(conf.models) ~= "table" then fail(file, "models", "a table of alias = { provider, model }", conf.models) end
    for alias, m in pairs(conf.models) do
      out.models[alias] = check_alias(file, alias, m, out.providers, out.routing)
    end
  end
  -- The per-target counters and breaker states of aigw.engine.balancer live here,
  -- shared by every worker.
  if next(out.models) ~= nil and out.shared.aigw_routing == nil then
    out.shared.aigw_routing = ROUTING_ZONE_SIZE
  end
  out.redis = check_redis(file, conf.redis)
  -- Prices in USD per million tokens, over aigw.usage's defaults.
  out.prices = {}
  if conf.prices ~= nil then
    if type(conf.prices) ~= "table" then
      fail(file, "prices", "a table of model = { input = ..., output = ... }", conf.prices)
    end
    for model, pr in pairs(conf.prices) do
      local f = "prices." .. tostring(model)
      if type(model) ~= "string" or type(pr) ~= "table" then fail(file, f, "{ input = ..., output = ... }", pr) end
      for k, v in pairs(pr) do
        if not (k == "input" or k == "output" or k == "cached_input" or k == "cache_write") then
          fail(file, f .. "." .. tostring(k), "one of input, output, cached_input, cache_write", k)
        end
        if type(v) ~= "number" or v < 0 then fail(file, f .. "." .. k, "a price >= 0 (USD per million tokens)", v) end
      end
      out.prices[model] = pr
    end
  end
  return out
end

-- Loads a Lua file under a short chunk name and puts the real path back in
-- messages: LuaJIT cuts chunk names to 60 bytes, which would hide which
-- file (and so which line) an error is about.
function M.loadfile(path)
  local f, oerr = io.open(path, "rb")
  if not f then
    return nil, string.format("%s: cannot open the file (%s)", path, (oerr or ""):match(": ([^:]+)$") or oerr)
  end
  local src = f:read("*a")
  f:close()
  local chunk, err = loadstring(src, "=" .. "<file>")
  if not chunk then return nil, (err:gsub("^<file>", path, 1)) end
  return chunk
end

function M.load(path)
  local chunk, err = M.loadfile(path)
  if not chunk then error(err, 0) end
  local ok, conf = pcall(chunk)
  if not ok then
    conf = tostring(conf):gsub("^<file>", path, 1)
    if conf:sub(1, #path) ~= path then conf = path .. ": " .. conf end
    error(conf, 0)
  end
  return M.normalise(path, conf)
end

return M

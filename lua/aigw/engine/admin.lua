-- aigw.engine.admin -- the admin listener's endpoints, and who may use them.
--
-- GET /metrics is open: Prometheus scrapes it without credentials (the core
-- answers /health and /ready before Lua, open as well). Every other path
-- (/admin/status, /admin/reload, their older names /status and /reload, and
-- any unknown path, so that a 404 tells nothing to a stranger) is guarded:
--
--   admin_keys configured   `Authorization: Bearer <admin key>` (or
--                           x-api-key); none: 401, any other key, a gateway
--                           key included: 403
--   none configured         no key, but only for a loopback peer, whose Host
--                           names a loopback address (a DNS-rebinding page
--                           sends its own name) and who sends no Origin
--                           (a browser: a cross-site form or fetch() needs
--                           no preflight to POST /admin/reload)
--
-- The runtime's handler calls the endpoint function this module makes
-- before any plugin runs, so neither key-auth nor its absence decides.

local request = require "aigw.request"
local errors = require "aigw.errors"
local crypto = require "aigw.crypto"
local json = require "aigw.json"
local cjson = require "cjson"
local ffi = require "ffi"
require "aigw.ffi_defs"

local M = {}

-- The process's own series, after the balancer's: lines of the log the
-- writer dropped because stderr did not keep up (core/base/log.c).
function M.process_metrics()
  return "# HELP aigw_log_lines_dropped_total Log lines dropped because the log sink did not keep up.\n"
    .. "# TYPE aigw_log_lines_dropped_total counter\n"
    .. string.format("aigw_log_lines_dropped_total %.0f\n", tonumber(ffi.C.aigw_ffi_log_dropped()))
end

-- A Host header value that names this machine by address or by
-- "localhost", with or without a port: no DNS record can stand behind it.
function M.loopback_host(host)
  if type(host) ~= "string" then return false end
  local name, port = host:match("^(%[[^%]]*%])(.*)$")
  if not name then name, port = host:match("^([^:]*)(.*)$") end
  if port ~= "" and not port:match("^:%d%d?%d?%d?%d?$") then return false end
  name = name:lower()
  if name == "localhost" or name == "[::1]" then return true end
  local a, b, c = name:match("^127%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
  return a ~= nil and tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256
end

-- The key the client presents, as key-auth reads it.
local function presented_key()
  local auth = request.get_header("authorization")
  if auth then
    local key = auth:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(.-)%s*$")
    if key and key ~= "" then return key end
  end
  local key = request.get_header("x-api-key")
  if key and key ~= "" then return key end
  return nil
end

local function forbidden(code, message)
  return errors.response(403, code, message)
end

-- nil when the current request may use a guarded admin path; else the
-- error answer (status, body, headers). keys: the config's admin_keys.
function M.check(keys)
  local nkeys = #keys
  if nkeys > 0 then
    local key = presented_key()
    if not key then
      return errors.response(401, "missing_admin_key",
        "missing admin key: send 'Authorization: Bearer <admin key>' (one of admin_keys)",
        'WWW-Authenticate: Bearer realm="aigw admin"\r\n')
    end
    -- Every key compared, each in constant time, as key-auth does: neither
    -- the match nor its position shows in the timing.
    local found = false
    local equal = crypto.equal
    for i = 1, nkeys do
      if equal(key, keys[i]) then found = true end
    end
    if not found then
      return forbidden("invalid_admin_key", "not an admin key (gateway keys are not admin keys)")
    end
    return nil
  end
  if not request.is_loopback() then
    return forbidden("loopback_only",
      "no admin_keys are configured: the admin endpoints serve loopback clients only")
  end
  if request.get_header("origin") then
    return forbidden("origin_not_allowed",
      "no admin_keys are configured: the admin endpoints refuse requests with an Origin header (browsers)")
  end
  if not M.loopback_host(request.get_header("host")) then
    return forbidden("host_not_allowed",
      "no admin_keys are configured: the admin endpoints need a Host of 127.0.0.1, [::1] or localhost")
  end
  return nil
end

local JSON = "Content-Type: application/json\r\nCache-Control: no-store\r\n"

local PROMETHEUS = "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\nCache-Control: no-store\r\n"

local function get_only(method)
  if method ~= "GET" and method ~= "HEAD" then
    return errors.response(405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n")
  end
end

-- The admin listener's handler for one generation: serve(path, method)
-- returns status, body, headers. It serves its own endpoints, never the API.
function M.new(conf, routing)
  local keys = conf.admin_keys
  return function(path, method)
    if path == "/metrics" then
      local status, body, headers = get_only(method)
      if status then return status, body, headers end
      return 200, routing:metrics() .. M.process_metrics(), PROMETHEUS
    end
    local status, body, headers = M.check(keys)
    if status then return status, body, headers end
    if path == "/status" or path == "/admin/status" then
      status, body, headers = get_only(method)
      if status then return status, body, headers end
      local st = aigw_core.status()
      st.version = aigw_core.version
      st.worker = aigw_core.worker_id
      st.targets = setmetatable(routing:status(), json.array_mt)   -- [] when there is none
      return 200, json.encode(st) .. "\n", JSON
    end
    if path == "/admin/reload" or path == "/reload" then
      if method ~= "POST" then
        return errors.response(405, "method_not_allowed", "use POST", "Allow: POST\r\n")
      end
      local ok, msg = aigw_core.reload()
      if not ok then
        return errors.response(422, "reload_failed", "reload rejected: " .. tostring(msg))
      end
      return 200, cjson.encode({ reloaded = true, generation = tonumber(msg:match("%d+")) }) .. "\n", JSON
    end
    return errors.response(404, "not_found", "no such admin endpoint: " .. path)
  end
end

return M

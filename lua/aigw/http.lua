-- aigw.http -- outbound HTTP/1.1 requests from plugins, on the core's
-- upstream client (pooled keep-alive connections, TLS, the worker's DNS
-- cache). The calling coroutine waits; the worker goes on serving.
--
--   local res, err = aigw.http.request{
--     method = "POST", url = "https://hooks.example.com/x?y=1",
--     headers = { ["content-type"] = "application/json" },
--     body = '{"a":1}', timeout = 5,
--   }
--   if not res then aigw.log.warn("webhook: ", err) end
--   -- res.status, res.headers["content-type"], res.body
--
-- Misuse (a bad url, an unknown option, CR/LF in a header) raises an error
-- naming the field; network failures return nil, err. See docs/lua-api.md.

local core = aigw_core

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local pcall, error = pcall, error
local find, lower, sub, format = string.find, string.lower, string.sub, string.format
local concat = table.concat

local M = {}

local DEFAULT_TIMEOUT = 60
local DEFAULT_MAX_BODY = 16 * 1024 * 1024

local OPTIONS = {
  method = true, url = true, headers = true, body = true, timeout = true, on_chunk = true,
  tls_verify = true, ca_file = true, keepalive = true, max_body = true,
}

-- Header names the core sets from the request itself.
local RESERVED = {
  ["content-length"] = true, ["transfer-encoding"] = true, ["connection"] = true,
  ["keep-alive"] = true, ["te"] = true, ["trailer"] = true, ["upgrade"] = true,
  ["proxy-connection"] = true,
}

-- Misuse is raised as { message } and re-raised by request() at the
-- plugin's call, so the error points at the plugin's line.
local function fail(field, msg)
  error({ "aigw.http.request: " .. field .. ": " .. msg }, 0)
end

-- Targets (and with them TLS contexts, whose CA store is costly to load)
-- are made once per scheme, host, port, ca_file and verify flag, and kept
-- for the life of the VM. Past MAX_TARGETS distinct ones the cache starts
-- over; exchanges in flight keep their own target alive.
local MAX_TARGETS = 128
local targets, ntargets = {}, 0

local function target_for(scheme, hostport, verify, ca_file)
  local key = scheme .. "://" .. hostport .. "|" .. (ca_file or "") .. "|" .. (verify and "1" or "0")
  local t = targets[key]
  if t then return t end
  local ok, res = pcall(core.target, {
    url = scheme .. "://" .. hostport, tls_verify = verify, ca_file = ca_file,
  })
  if not ok then
    -- The URL was checked here already: what is left is the TLS set-up
    -- (an unreadable ca_file, for one).
    local msg = tostring(res):gsub("^target: ", "")
    if not find(msg, "^tls: ") then msg = "tls: " .. msg end
    return nil, msg
  end
  if ntargets >= MAX_TARGETS then targets, ntargets = {}, 0 end
  targets[key] = res
  ntargets = ntargets + 1
  return res
end

-- "https://Host:8443/p?q#f" -> scheme, "host:8443" (IPv6 in brackets), "/p?q".
local function parse_url(url)
  if type(url) ~= "string" then fail("url", "expected a string, got " .. type(url)) end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    fail("url", "expected http:// or https:// (" .. url .. ")")
  end
  local authority = rest:match("^[^/?#]*")
  local path = sub(rest, #authority + 1):gsub("#.*$", "")
  if path == "" then path = "/" elseif sub(path, 1, 1) == "?" then path = "/" .. path end
  if find(path, "[%z\1-\32\127]") then
    fail("url", "spaces or control characters in the path (percent-encode them)")
  end
  if find(authority, "@", 1, true) then fail("url", "user information is not supported") end
  local host, port
  if sub(authority, 1, 1) == "[" then
    host, port = authority:match("^(%[[%x:.]+%])(.*)$")
  else
    host, port = authority:match("^([^:]*)(.*)$")
  end
  if not host or host == "" then fail("url", "missing host (" .. url .. ")") end
  if sub(host, 1, 1) ~= "[" and not find(host, "^[%w.-]+$") then
    fail("url", "bad host (" .. url .. ")")
  end
  if port == "" then
    port = scheme == "https" and 443 or 80
  else
    port = tonumber(port:match("^:(%d+)$"))
    if not port or port < 1 or port > 65535 then fail("url", "bad port (" .. url .. ")") end
  end
  return scheme, lower(host) .. ":" .. port, path
end

local function check_value(name, v)
  local tv = type(v)
  if tv == "number" then return tostring(v) end
  if tv ~= "string" then
    fail("headers", format("%s: expected a string, a number or a list of them, got %s", name, tv))
  end
  if find(v, "[\r\n%z]") then fail("headers", name .. ": CR, LF or NUL in the value") end
  return v
end

-- The header table as lines; whether it sets Host and User-Agent itself.
local function header_lines(headers)
  if headers == nil then return "", false, false end
  if type(headers) ~= "table" then fail("headers", "expected a table, got " .. type(headers)) end
  local out, n, has_host, has_ua = {}, 0, false, false
  for name, v in pairs(headers) do
    if type(name) ~= "string" or not find(name, "^[!#$%%&'*+%-.^_`|~%w]+$") then
      fail("headers", "bad header name " .. format("%q", tostring(name)))
    end
    local lname = lower(name)
    if RESERVED[lname] then fail("headers", lname .. " is set by aigw.http") end
    if lname == "host" then has_host = true elseif lname == "user-agent" then has_ua = true end
    if type(v) == "table" then
      for _, item in ipairs(v) do
        n = n + 1
        out[n] = name .. ": " .. check_value(name, item) .. "\r\n"
      end
    else
      n = n + 1
      out[n] = name .. ": " .. check_value(name, v) .. "\r\n"
    end
  end
  return concat(out), has_host, has_ua
end

local function opt_number(opts, field, default, min_exclusive)
  local v = opts[field]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v <= min_exclusive then
    fail(field, "expected a number > " .. min_exclusive)
  end
  return v
end

local function opt_boolean(opts, field, default)
  local v = opts[field]
  if v == nil then return default end
  if type(v) ~= "boolean" then fail(field, "expected a boolean, got " .. type(v)) end
  return v
end

-- The checked options.
local function prepare(opts)
  for k in pairs(opts) do
    if not OPTIONS[k] then fail(tostring(k), "unknown option") end
  end
  local scheme, hostport, path = parse_url(opts.url)
  local method = opts.method or "GET"
  if type(method) ~= "string" or not find(method, "^[!#$%%&'*+%-.^_`|~%w]+$") then
    fail("method", "expected an HTTP method such as \"GET\"")
  end
  local body = opts.body
  if body ~= nil and type(body) ~= "string" then
    fail("body", "expected a string, got " .. type(body))
  end
  local on_chunk = opts.on_chunk
  if on_chunk ~= nil and type(on_chunk) ~= "function" then
    fail("on_chunk", "expected a function, got " .. type(on_chunk))
  end
  local timeout = opt_number(opts, "timeout", DEFAULT_TIMEOUT, 0)
  local max_body = opt_number(opts, "max_body", DEFAULT_MAX_BODY, -1)
  local verify = opt_boolean(opts, "tls_verify", true)
  local keepalive = opt_boolean(opts, "keepalive", true)
  local ca_file = opts.ca_file
  if ca_file ~= nil and type(ca_file) ~= "string" then
    fail("ca_file", "expected a string, got " .. type(ca_file))
  end
  local lines, has_host, has_ua = header_lines(opts.headers)
  if scheme == "http" then verify, ca_file = false, nil end
  return scheme, hostport, path, method, body, on_chunk, timeout, max_body, verify, keepalive,
         ca_file, lines, has_host, has_ua
end

function M.request(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'request' (table expected, got " .. type(opts) .. ")", 2)
  end
  local ok, scheme, hostport, path, method, body, on_chunk, timeout, max_body, verify,
        keepalive, ca_file, lines, has_host, has_ua = pcall(prepare, opts)
  if not ok then
    if type(scheme) == "table" then error(scheme[1], 2) end
    error(scheme, 0)
  end

  local target, terr = target_for(scheme, hostport, verify, ca_file)
  if not target then return nil, terr end

  local op = core.http_op()
  local status, headers, res_body = core.http_request(op, target, method, path, lines, body,
    timeout, max_body, on_chunk ~= nil, keepalive, not has_host, not has_ua)
  if not status then return nil, headers end
  if not on_chunk then
    return { status = status, headers = headers, body = res_body }
  end
  while true do
    local piece, err = core.http_read(op)
    if not piece then
      if err then return nil, err end
      break
    end
    local cok, cerr = pcall(on_chunk, piece)
    if not cok then
      core.http_close(op)
      error(cerr, 0)
    end
  end
  return { status = status, headers = headers }
end

return M

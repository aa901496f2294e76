-- aigw.request -- the current request, read through the FFI.
--
-- Each request runs in its own coroutine whose exdata is the C request;
-- these functions find it from there, so they need no argument and work
-- from any plugin of the request. Strings are copied out once per call.
-- Callable in every phase that has a request (access, log).

local ffi = require "ffi"
require "aigw.ffi_defs"
local exdata = require "thread.exdata"
local json = require "aigw.json"

local C = ffi.C
local str = ffi.new("aigw_str_t[1]")
local str2 = ffi.new("aigw_str_t[1]")
local ffi_string = ffi.string

local M = {}

local function req()
  local r = exdata()
  if r == nil then error("no request in this context", 3) end
  return ffi.cast("aigw_req_t *", r)
end

function M.get_method()
  C.aigw_ffi_req_method(req(), str)
  return ffi_string(str[0].p, str[0].n)
end

function M.get_path()
  C.aigw_ffi_req_path(req(), str)
  return ffi_string(str[0].p, str[0].n)
end

function M.get_query()
  if C.aigw_ffi_req_query(req(), str) == 0 then return nil end
  return ffi_string(str[0].p, str[0].n)
end

-- The first header of that name (case-insensitive), or nil.
function M.get_header(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'get_header' (string expected, got " .. type(name) .. ")", 2)
  end
  if C.aigw_ffi_req_header(req(), name, #name, str) == 0 then return nil end
  return ffi_string(str[0].p, str[0].n)
end

-- Every header as { {name, value}, ... } in arrival order.
function M.get_headers()
  local r = req()
  local out = {}
  for i = 0, C.aigw_ffi_req_header_count(r) - 1 do
    C.aigw_ffi_req_header_at(r, i, str, str2)
    out[#out + 1] = { ffi_string(str[0].p, str[0].n), ffi_string(str2[0].p, str2[0].n) }
  end
  return out
end

-- The query string decoded into a table: ?a=1&b=x%20y&a=2&flag gives
-- { a = { "1", "2" }, b = "x y", flag = true }. Empty table without a query.
-- %XX sequences decoded (nothing else changes).
function M.unescape_uri(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function unescape(s)
  return M.unescape_uri((s:gsub("+", " ")))
end

function M.get_query_args(max)
  local q = M.get_query()
  local out = {}
  if not q then return out end
  max = max or 100
  local n = 0
  for pair in q:gmatch("[^&]+") do
    n = n + 1
    if n > max then break end
    local k, v = pair:match("^([^=]*)=(.*)$")
    if k then v = unescape(v) else k, v = pair, true end
    k = unescape(k)
    local prev = out[k]
    if prev == nil then out[k] = v
    elseif type(prev) == "table" then prev[#prev + 1] = v
    else out[k] = { prev, v } end
  end
  return out
end

local addr_buf = ffi.new("char[64]")
local port_buf = ffi.new("int[1]")

-- The client's address ("127.0.0.1", "::1") and port.
function M.get_client_addr()
  if C.aigw_ffi_req_client_addr(req(), addr_buf, 64, port_buf) == 0 then return nil end
  return ffi_string(addr_buf), port_buf[0]
end

function M.get_body()
  C.aigw_ffi_req_body(req(), str)
  return ffi_string(str[0].p, str[0].n)
end

-- The body decoded as JSON, once per request (cached in ctx). Returns
-- nil, err for a body that is not JSON.
function M.get_json(ctx)
  local cached = ctx._json
  if cached ~= nil then
    if cached == false then return nil, ctx._json_err end
    return cached
  end
  local body = M.get_body()
  if body == "" then
    ctx._json, ctx._json_err = false, "the request body is empty"
    return nil, ctx._json_err
  end
  local v, err = json.decode(body)
  if v == nil or type(v) ~= "table" then
    ctx._json, ctx._json_err = false, "the request body is not valid JSON: " .. tostring(err or "expected an object")
    return nil, ctx._json_err
  end
  ctx._json = v
  return v
end

function M.id()
  C.aigw_ffi_req_id(req(), str)
  return ffi_string(str[0].p, str[0].n)
end

function M.is_loopback()
  return C.aigw_ffi_req_is_loopback(req()) == 1
end

-- Whether errors for this request use Anthropic's envelope.
function M.is_anthropic()
  return C.aigw_ffi_req_is_anthropic(req()) == 1
end

function M.is_admin()
  return C.aigw_ffi_req_is_admin(req()) == 1
end

function M.start_time()
  return tonumber(C.aigw_ffi_req_start_time(req()))
end

return M

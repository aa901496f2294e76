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
local state = require "aigw.engine.state"

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

-- A request whose body did not come with its head reaches the access phase
-- before its body is read (so a refused request costs no body). This reads
-- it: true at once when it is in, else the request's thread waits for it.
-- Where waiting is not possible (header_filter, body_filter, log of a
-- request answered before its body was read; a plugin's own coroutine):
-- nil and why. The runtime reads it after the access phase; every function
-- below that needs the body reads it first.
local read_body = aigw_core.read_body

-- Whether the body is all in (it is, unless the access phase runs before it).
function M.body_complete()
  return C.aigw_ffi_req_body_complete(req()) ~= 0
end

function M.read_body()
  if C.aigw_ffi_req_body_complete(req()) ~= 0 then return true end
  return read_body()
end

-- The raw body (waits for it, see read_body); nil and why when it cannot.
function M.get_body()
  local r = req()
  if C.aigw_ffi_req_body_complete(r) == 0 then
    local ok, err = read_body()
    if not ok then return nil, err end
  end
  C.aigw_ffi_req_body(r, str)
  return ffi_string(str[0].p, str[0].n)
end

-- The body decoded as JSON, once per request (cached in ctx._engine). Returns
-- nil, err for a body that is not JSON.
function M.get_json(ctx)
  local e = state.of(ctx)
  local cached = e.json
  if cached ~= nil then
    if cached == false then return nil, e.json_err end
    return cached
  end
  local body, berr = M.get_body()
  if not body then return nil, berr end
  if body == "" then
    e.json, e.json_err = false, "the request body is empty"
    return nil, e.json_err
  end
  local v, err = json.decode(body)
  if v == nil or type(v) ~= "table" then
    e.json, e.json_err = false, "the request body is not valid JSON: " .. tostring(err or "expected an object")
    return nil, e.json_err
  end
  e.json = v
  return v
end

-- The members the router reads (model, stream, stream_options,
-- max_tokens), decoded, without decoding the whole body: the core checks
-- the whole text is valid JSON and finds them in one pass (see
-- core/base/json_scan.h). Cached in ctx._engine. Returns nil, err for a body that is not
-- a JSON object (err says where and why; a third value true when it is
-- valid JSON but not an object).
local FIELDS = { "model", "stream", "stream_options", "max_tokens" }
local field_names = ffi.new("const char *[?]", #FIELDS, FIELDS)
local field_lens = ffi.new("size_t[?]", #FIELDS)
for i, f in ipairs(FIELDS) do field_lens[i - 1] = #f end
local spans = ffi.new("aigw_json_span_t[?]", #FIELDS)
local errbuf = ffi.new("char[200]")
local odd = ffi.new("int[1]")
local cjson_decode = require("cjson.safe").decode

function M.get_json_fields(ctx)
  local e = state.of(ctx)
  local cached = e.fields
  if cached ~= nil then
    if cached == false then return nil, e.json_err, e.not_object end
    return cached
  end
  local r = req()
  if C.aigw_ffi_req_body_complete(r) == 0 then
    local ok, berr = read_body()
    if not ok then return nil, berr end
  end
  C.aigw_ffi_req_body(r, str)
  local p, n = str[0].p, tonumber(str[0].n)
  local err
  if n == 0 then
    err = "the request body is empty"
  else
    local rc = C.aigw_json_scan(p, n, field_names, field_lens, #FIELDS, spans, odd, errbuf, 200)
    if rc == -1 then
      err = "the request body is not valid JSON: " .. ffi_string(errbuf)
    elseif rc == 0 then
      e.fields, e.json_err = false, "the request body must be a JSON object"
      e.not_object = true
      return nil, e.json_err, true
    end
  end
  if err then
    e.fields, e.json_err = false, err
    return nil, err
  end
  local out = {}
  for i, name in ipairs(FIELDS) do
    local sp = spans[i - 1]
    local s0 = sp.start
    if s0 >= 0 then
      local len = sp["end"] - s0
      local c = p[s0]
      local v
      if c == 34 and len >= 2 and C.memchr(p + s0 + 1, 92, len - 2) == nil then
        v = ffi_string(p + s0 + 1, len - 2)          -- a string without escapes
      elseif c == 116 then v = true                   -- the text is valid: true
      elseif c == 102 then v = false
      else
        v = cjson_decode(ffi_string(p + s0, len))
      end
      if v ~= nil then out[name] = v end
      -- Where the model's value is in the body (1-based, inclusive), so
      -- that aigw.engine.dispatch can put another name there without a scan.
      if i == 1 then e.model_at, e.model_end = s0 + 1, tonumber(sp["end"]) end
    end
  end
  e.fields = out
  -- A member written with escapes or twice: the raw text must not be
  -- edited in place (aigw.engine.dispatch re-encodes it instead).
  if odd[0] ~= 0 then e.fields_odd = true end
  return out
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

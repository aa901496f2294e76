-- aigw.response -- the response of the current request.
--
--   aigw.exit(status, body, headers)     answer now (access, upstream,
--                                        header_filter)
--   aigw.response.filter_body()          send this response's body through
--                                        the body_filter phase
--   get_status / set_status / get_header / get_headers / set_header /
--   add_header                           the head, in header_filter
--
-- header_filter runs on one thread that never waits, so the head being
-- filtered is kept here, in the module, for the length of the phase.

local ffi = require "ffi"
require "aigw.ffi_defs"
local exdata = require "thread.exdata"
local cjson = require "cjson"
local state = require "aigw.engine.state"

local C = ffi.C
local M = {}

local cur          -- { status, headers = { {name, value}, ... }, dirty }
local cur_ctx, cur_phase, cur_co
local running = coroutine.running
local EXIT = setmetatable({}, { __tostring = function() return "aigw.exit" end })

-- The phase state belongs to the thread that runs the phase: a phase cut
-- short by aigw.exit never calls _finish, and must not leak into requests
-- running elsewhere.
local function in_phase()
  return cur_phase ~= nil and cur_co == running()
end

function M._begin(ctx, phase, status, head)
  cur_ctx, cur_phase, cur_co = ctx, phase, running()
  if phase ~= "header_filter" then return nil end
  local headers = {}
  for name, value in head:gmatch("([^:\r\n]+):[ \t]*([^\r\n]*)\r\n") do
    headers[#headers + 1] = { name, value }
  end
  cur = { status = status, headers = headers, dirty = false }
  return cur
end

function M._finish()
  -- cur_ctx is only written through (aigw.exit sets ctx._exit for the runtime to read),
  -- which luacheck takes for a value never read.
  cur, cur_ctx, cur_phase, cur_co = nil, nil, nil, nil  -- luacheck: ignore 331
end

function M._serialize(resp)
  local out = {}
  for i, h in ipairs(resp.headers) do out[i] = h[1] .. ": " .. h[2] .. "\r\n" end
  return table.concat(out)
end

local function head(fn)
  if not cur or not in_phase() then
    error("aigw.response." .. fn .. ": only in header_filter (the head is sent by then)", 3)
  end
  return cur
end

function M.get_status()
  return head("get_status").status
end

function M.set_status(status)
  local h = head("set_status")
  if type(status) ~= "number" or status % 1 ~= 0 or status < 200 or status > 599 then
    error("bad argument #1 to 'set_status' (a status from 200 to 599 expected)", 2)
  end
  h.status, h.dirty = status, true
end

-- An HTTP token (RFC 9110 5.6.2): what a header name may be.
local TOKEN = "^[%w!#$%%&'*+.^_`|~-]+$"

-- A header table as "Name: value\r\n" lines; on bad input nil, then
-- "name" or "value", and the header's name, for the caller's message.
function M._header_lines(headers)
  local out = {}
  for name, value in pairs(headers) do
    if type(name) ~= "string" or not name:match(TOKEN) then return nil, "name", name end
    value = tostring(value)
    if value:find("[\r\n%z]") then return nil, "value", name end
    out[#out + 1] = name .. ": " .. value .. "\r\n"
  end
  return table.concat(out)
end

local function check_name(name, fn)
  if type(name) ~= "string" or not name:match(TOKEN) then
    error("bad argument #1 to '" .. fn .. "' (a header name expected)", 3)
  end
end

local function check_value(value, fn)
  value = tostring(value)
  if value:find("[\r\n%z]") then error("bad argument #2 to '" .. fn .. "' (CR, LF or NUL in value)", 3) end
  return value
end

-- The first value of that header (case-insensitive), or nil.
function M.get_header(name)
  local h = head("get_header")
  check_name(name, "get_header")
  name = name:lower()
  for _, kv in ipairs(h.headers) do
    if kv[1]:lower() == name then return kv[2] end
  end
  return nil
end

-- Every header as { {name, value}, ... } in order (a copy).
function M.get_headers()
  local h = head("get_headers")
  local out = {}
  for i, kv in ipairs(h.headers) do out[i] = { kv[1], kv[2] } end
  return out
end

-- Replaces every header of that name with one; nil removes them.
function M.set_header(name, value)
  local h = head("set_header")
  check_name(name, "set_header")
  if value ~= nil then value = check_value(value, "set_header") end
  local lname, kept = name:lower(), {}
  for _, kv in ipairs(h.headers) do
    if kv[1]:lower() ~= lname then kept[#kept + 1] = kv end
  end
  if value ~= nil then kept[#kept + 1] = { name, value } end
  h.headers, h.dirty = kept, true
end

function M.add_header(name, value)
  local h = head("add_header")
  check_name(name, "add_header")
  h.headers[#h.headers + 1] = { name, check_value(value, "add_header") }
  h.dirty = true
end

-- Asks for the body_filter phase on this request's response. Call it in
-- access, upstream or header_filter. Returns false when no plugin of this
-- generation has a body_filter.
function M.filter_body()
  local r = exdata()
  if r == nil then error("aigw.response.filter_body: no request here", 2) end
  if in_phase() and (cur_phase == "body_filter" or cur_phase == "log") then
    error("aigw.response.filter_body: too late in " .. cur_phase, 2)
  end
  return C.aigw_ffi_req_filter_body(ffi.cast("aigw_req_t *", r)) == 1
end

-- The runtime's own filters for this request (translation, usage): what is
-- a sum of 1 (header_filter), 2 (body_filter), 4 (body_filter watching
-- only: the original bytes go out), 8 (header_filter when some plugin
-- filters upstream errors). See aigw_ffi_req_filter.
function M._filter(what)
  local r = exdata()
  if r ~= nil then C.aigw_ffi_req_filter(ffi.cast("aigw_req_t *", r), what) end
end

function M._filter_errors() M._filter(8) end

-- The filter flags as one number, to put back before another attempt
-- (set: that number; nil only reads).
function M._filter_state(set)
  local r = exdata()
  if r == nil then return 0 end
  return C.aigw_ffi_req_filter_state(ffi.cast("aigw_req_t *", r), set or -1)
end

-- Header lines every response head of this request carries (which target
-- answered); ctx._engine keeps the string alive while the core points into it.
function M._response_lines(ctx, lines)
  local r = exdata()
  if r == nil then return end
  state.of(ctx).response_lines = lines
  C.aigw_ffi_req_resp_lines(ffi.cast("aigw_req_t *", r), lines, #lines)
end

-- Errors point at exit's caller (level 3 from here).
local function header_string(headers)
  if headers == nil then return "" end
  if type(headers) == "string" then
    -- Each line ends in CRLF and holds no other CR, LF or NUL, and none is
    -- blank (the core checks again, names included, before it sends).
    if headers ~= "" and (headers:sub(-2) ~= "\r\n" or headers:find("\r\n\r\n", 1, true)
                          or headers:find("^[\r\n]") or headers:find("[^\r]\n")
                          or headers:find("\r[^\n]") or headers:find("%z")) then
      error("bad argument #3 to 'exit' (header lines must each end in \\r\\n, with no other CR, LF or NUL)", 3)
    end
    return headers
  end
  if type(headers) ~= "table" then error("bad argument #3 to 'exit' (table or string expected)", 3) end
  local lines, bad, name = M._header_lines(headers)
  if lines then return lines end
  if bad == "name" then error("bad argument #3 to 'exit' (bad header name " .. tostring(name) .. ")", 3) end
  error("bad argument #3 to 'exit' (CR, LF or NUL in header " .. name .. ")", 3)
end

-- Ends the request with this answer. body: a string, or a table sent as
-- JSON; headers: { name = value } or header lines. Never returns.
function M.exit(status, body, headers)
  if type(status) ~= "number" or status % 1 ~= 0 or status < 200 or status > 599 then
    error("bad argument #1 to 'exit' (a status from 200 to 599 expected)", 2)
  end
  local lines = header_string(headers)
  if type(body) == "table" then
    body = cjson.encode(body)
    lines = "Content-Type: application/json\r\n" .. lines
  elseif body == nil then
    body = ""
  elseif type(body) ~= "string" then
    error("bad argument #2 to 'exit' (string or table expected)", 2)
  end
  if in_phase() then
    if cur_phase ~= "header_filter" then
      error("aigw.exit: the response has already started (" .. cur_phase .. ")", 2)
    end
    cur_ctx._exit = { status, body, lines }
    aigw_core.exit_sync(EXIT)   -- raises until Lua is back in C
  end
  aigw_core.exit(status, body, lines)
  error("aigw.exit: the request went on after exit", 2)
end

return M

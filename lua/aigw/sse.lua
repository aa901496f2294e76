-- aigw.sse: Server-Sent Events (text/event-stream) for LLM streams.
--
-- The parser follows the WHATWG HTML "event stream interpretation" rules:
-- lines end in CRLF, LF or CR; a leading BOM is dropped; lines starting
-- with ":" are comments; "field: value" loses one space after the colon;
-- a line without a colon is a field with an empty value; "data" lines are
-- joined with "\n"; a blank line dispatches the event; an event without any
-- data line is not dispatched; an event still incomplete at the end of the
-- stream is discarded.
--
-- Work is linear in the input: the buffer is searched with string.find from
-- where the last search stopped, and a line split across chunks is kept as a
-- list of pieces joined once, when its end arrives.

local type, error, tonumber = type, error, tonumber
local find, sub, byte, gsub = string.find, string.sub, string.byte, string.gsub
local concat = table.concat

local _M = {}

local BOM = "\239\187\191"
local CR, LF = 13, 10

_M.DONE = "data: [DONE]\n\n"

local Parser = {}
Parser.__index = Parser

local function reset_event(self)
  self._data = nil      -- list of data lines, nil until the first one
  self._ndata = 0
  self._event = nil
  self._retry = nil
  self._pending = false -- any field seen since the last dispatch
end

local function dispatch(self, out)
  if self._ndata > 0 then
    local data = self._ndata == 1 and self._data[1] or concat(self._data, "\n", 1, self._ndata)
    local id = self.last_event_id
    if id == "" then id = nil end
    out[#out + 1] = { event = self._event, data = data, id = id, retry = self._retry }
  end
  reset_event(self)
end

local function process_line(self, line, out)
  if line == "" then
    return dispatch(self, out)
  end
  local c = find(line, ":", 1, true)
  if c == 1 then return end            -- comment
  local field, value
  if c then
    field = sub(line, 1, c - 1)
    if byte(line, c + 1) == 32 then
      value = sub(line, c + 2)
    else
      value = sub(line, c + 1)
    end
  else
    field, value = line, ""
  end
  if field == "data" then
    local n = self._ndata + 1
    local d = self._data
    if not d then d = {}; self._data = d end
    d[n] = value
    self._ndata = n
    self._pending = true
  elseif field == "event" then
    self._event = value
    self._pending = true
  elseif field == "id" then
    if not find(value, "\0", 1, true) then
      self.last_event_id = value
    end
    self._pending = true
  elseif field == "retry" then
    if value ~= "" and not find(value, "[^0-9]") then
      local ms = tonumber(value)
      self.retry = ms
      self._retry = ms
    end
    self._pending = true
  end
  -- any other field is ignored
end

-- Lines of `s` from `pos` on; what follows the last line end is kept.
local function scan(self, s, pos, out)
  local len = #s
  if self._skip_lf then
    if pos > len then return end
    if byte(s, pos) == LF then pos = pos + 1 end
    self._skip_lf = false
  end
  -- Line ends by plain finds (the pattern "[\r\n]" is tried at every
  -- byte by Lua's matcher). The next CR and the next LF are each searched
  -- for again only once the last one found is behind us, so a stream that
  -- uses one of them alone is not scanned to its end for the other per line.
  local cr, lf = find(s, "\r", pos, true), find(s, "\n", pos, true)
  while pos <= len do
    if cr and cr < pos then cr = find(s, "\r", pos, true) end
    if lf and lf < pos then lf = find(s, "\n", pos, true) end
    local e = lf
    if cr and (not lf or cr < lf) then e = cr end
    if not e then
      self._parts[1] = sub(s, pos)   -- the start of an unterminated line
      self._nparts = 1
      return
    end
    process_line(self, sub(s, pos, e - 1), out)
    if byte(s, e) == CR then
      if e == len then
        self._skip_lf = true         -- a LF may begin the next chunk
        return
      end
      if byte(s, e + 1) == LF then e = e + 1 end
    end
    pos = e + 1
  end
end

--- Feed the next bytes of the stream. Returns the list of events completed
--- by them (an empty list when none).
function Parser:feed(chunk)
  if type(chunk) ~= "string" then
    error("bad argument #1 to 'feed' (string expected, got " .. type(chunk) .. ")", 2)
  end
  local out = {}
  if chunk == "" then return out end

  if not self._bom_checked then
    -- the BOM may itself be split across chunks: hold up to 2 bytes of it
    local head = self._bom_head .. chunk
    if #head < 3 and sub(BOM, 1, #head) == head then
      self._bom_head = head
      return out
    end
    self._bom_checked = true
    self._bom_head = ""
    if sub(head, 1, 3) == BOM then
      chunk = sub(head, 4)
    else
      chunk = head
    end
    if chunk == "" then return out end
  end

  local nparts = self._nparts
  if nparts == 0 then
    scan(self, chunk, 1, out)
    return out
  end

  -- an unterminated line is pending: find where it ends in this chunk
  local pos = 1
  if self._skip_lf then  -- cannot happen with pending parts, kept for safety
    self._skip_lf = false
    if byte(chunk, 1) == LF then pos = 2 end
  end
  local e = find(chunk, "[\r\n]", pos)
  local parts = self._parts
  if not e then
    nparts = nparts + 1
    parts[nparts] = chunk
    self._nparts = nparts
    return out
  end
  parts[nparts + 1] = sub(chunk, pos, e - 1)
  local line = concat(parts, "", 1, nparts + 1)
  for i = nparts + 1, 1, -1 do parts[i] = nil end
  self._nparts = 0
  process_line(self, line, out)
  if byte(chunk, e) == CR then
    if e == #chunk then
      self._skip_lf = true
      return out
    end
    if byte(chunk, e + 1) == LF then e = e + 1 end
  end
  scan(self, chunk, e + 1, out)
  return out
end

--- End of stream. Returns the list of events still to deliver and whether
--- an incomplete event was discarded. Per the WHATWG rules an event not
--- closed by a blank line is discarded, so the list is empty unless the
--- parser was made with `{ dispatch_incomplete = true }`. The parser is
--- reset and may read a new stream.
function Parser:finish()
  local out = {}
  local incomplete = false
  if self._nparts > 0 then
    local line = concat(self._parts, "", 1, self._nparts)
    for i = self._nparts, 1, -1 do self._parts[i] = nil end
    self._nparts = 0
    if self.dispatch_incomplete then
      process_line(self, line, out)
    end
    -- an unterminated comment loses nothing
    if byte(line, 1) ~= 58 then incomplete = true end
  end
  if self._pending then
    incomplete = true
    if self.dispatch_incomplete then dispatch(self, out) end
  end
  if not self.dispatch_incomplete then out = {} end
  reset_event(self)
  self._skip_lf = false
  self._bom_checked = false
  self._bom_head = ""
  self.last_event_id = nil
  self.retry = nil
  return out, incomplete
end

--- A new parser for one stream.
function _M.parser(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'parser' (table expected, got " .. type(opts) .. ")", 2)
  end
  local self = setmetatable({
    dispatch_incomplete = opts and opts.dispatch_incomplete and true or false,
    last_event_id = nil,
    retry = nil,
    _parts = {},
    _nparts = 0,
    _skip_lf = false,
    _bom_checked = false,
    _bom_head = "",
  }, Parser)
  reset_event(self)
  return self
end

--- The wire text of one event: `event: NAME\n` (when a name is given), one
--- `data: ` line per line of `data`, and a blank line.
function _M.event(data, name)
  if type(data) ~= "string" then
    error("bad argument #1 to 'event' (string expected, got " .. type(data) .. ")", 2)
  end
  if name ~= nil then
    if type(name) ~= "string" then
      error("bad argument #2 to 'event' (string expected, got " .. type(name) .. ")", 2)
    end
    if find(name, "[\r\n]") then
      error("bad argument #2 to 'event' (event name must not contain a line break)", 2)
    end
  end
  local body
  if not find(data, "[\r\n]") then
    body = "data: " .. data .. "\n"
  else
    body = "data: " .. gsub(data, "\r?\n", "\ndata: ") .. "\n"
    if find(body, "\r", 1, true) then
      body = gsub(body, "\r", "\ndata: ")
    end
  end
  if name then
    return "event: " .. name .. "\n" .. body .. "\n"
  end
  return body .. "\n"
end

return _M

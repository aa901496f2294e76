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
-- list of pieces joined when its end arrives.
--
-- Memory is bounded whatever the stream: a line is held up to max_line
-- bytes and an event's data lines up to max_event (1 MiB each by default).
-- A line or an event past its bound is dropped (the rest of its bytes are
-- skipped as they come, none kept), the parser reads on from the next event,
-- and feed says so in its second result. The checks are a comparison per
-- chunk, per data line and, in a chunk longer than max_line only, per line;
-- never a pass over the bytes. Pieces of a line and data lines of an event
-- are merged as they come while the last is at least as long as the one
-- before (luaL_Buffer's rule), so at most log2 of the bound of them are
-- held: a flood of tiny ones costs no more than its bytes.

local type, error, tonumber = type, error, tonumber
local find, sub, byte, gsub = string.find, string.sub, string.byte, string.gsub
local concat = table.concat

local _M = {}

local BOM = "\239\187\191"
local CR, LF = 13, 10

-- The default bounds, in bytes.
_M.MAX_LINE = 1048576
_M.MAX_EVENT = 1048576

_M.DONE = "data: [DONE]\n\n"

local Parser = {}
Parser.__index = Parser

local function reset_event(self)
  self._data = nil      -- list of data lines, nil until the first one
  self._ndata = 0
  self._event = nil
  self._retry = nil
  self._pending = false -- any field seen since the last dispatch
  self._dsize = 0       -- bytes of the data lines, one more for each line end
  self._drop = false    -- the event went past a bound: its lines are ignored
end

-- The event in progress is dropped: its fields are ignored up to the blank
-- line that ends it, which dispatches nothing. err is feed's second result
-- (the first of a feed), and how many events of out came before it its
-- third.
local function drop_event(self, err, out)
  self._data = nil
  self._ndata = 0
  self._drop = true
  self._pending = true
  if not self._err then self._err, self._err_at = err, #out end
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
  if self._drop then return end        -- the rest of a dropped event
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
    local size = self._dsize + #value + 1
    if size > self.max_event then
      return drop_event(self, "event too large (limit " .. self.max_event .. " bytes)", out)
    end
    self._dsize = size
    local n = self._ndata + 1
    local d = self._data
    if not d then d = {}; self._data = d end
    d[n] = value
    while n > 1 and #d[n - 1] <= #value do   -- see the top of the file
      value = d[n - 1] .. "\n" .. value
      d[n - 1], d[n] = value, nil
      n = n - 1
    end
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

local function line_err(self)
  return "line too long (limit " .. self.max_line .. " bytes)"
end

-- The line being read went past max_line: what was kept of it goes, the
-- rest is skipped up to its end, and its event is dropped.
local function overlong(self, out)
  local parts = self._parts
  for i = self._nparts, 1, -1 do parts[i] = nil end
  self._nparts = 0
  self._plen = 0
  self._skip_line = true
  drop_event(self, line_err(self), out)
end

-- feed's results: the events, and why one was dropped with how many
-- came before it.
local function done(self, out)
  local err = self._err
  if err then
    self._err = nil
    return out, err, self._err_at
  end
  return out
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
  -- Only a piece longer than max_line can hold a whole line longer than
  -- that: the lengths of its lines are compared, no others.
  local check = len - pos >= self.max_line
  local cr, lf = find(s, "\r", pos, true), find(s, "\n", pos, true)
  while pos <= len do
    if cr and cr < pos then cr = find(s, "\r", pos, true) end
    if lf and lf < pos then lf = find(s, "\n", pos, true) end
    local e = lf
    if cr and (not lf or cr < lf) then e = cr end
    if not e then
      local n = len - pos + 1
      if n > self.max_line then return overlong(self, out) end
      self._parts[1] = sub(s, pos)   -- the start of an unterminated line
      self._nparts = 1
      self._plen = n
      return
    end
    if check and e - pos > self.max_line then
      drop_event(self, line_err(self), out)
    else
      process_line(self, sub(s, pos, e - 1), out)
    end
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
--- by them (an empty list when none). When these bytes took a line or an
--- event past its bound, that event is dropped and two more results say
--- why and how many events of the list came before it.
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
  if nparts == 0 and not self._skip_line then
    scan(self, chunk, 1, out)
    return done(self, out)
  end

  -- an unterminated line is pending (or being skipped): find where it ends
  -- in this chunk
  local pos = 1
  if self._skip_lf then  -- cannot happen with pending parts, kept for safety
    self._skip_lf = false
    if byte(chunk, 1) == LF then pos = 2 end
  end
  local e = find(chunk, "[\r\n]", pos)
  if self._skip_line then
    if not e then return out end
    self._skip_line = false
  else
    local parts = self._parts
    if not e then
      local plen = self._plen + #chunk
      if plen > self.max_line then
        overlong(self, out)
        return done(self, out)
      end
      nparts = nparts + 1
      parts[nparts] = chunk
      while nparts > 1 and #parts[nparts - 1] <= #chunk do   -- see the top of the file
        chunk = parts[nparts - 1] .. chunk
        parts[nparts - 1], parts[nparts] = chunk, nil
        nparts = nparts - 1
      end
      self._nparts = nparts
      self._plen = plen
      return out
    end
    local too_long = self._plen + (e - pos) > self.max_line
    local line = not too_long and concat(parts, "", 1, nparts) .. sub(chunk, pos, e - 1)
    for i = nparts, 1, -1 do parts[i] = nil end
    self._nparts = 0
    self._plen = 0
    if too_long then
      drop_event(self, line_err(self), out)
    else
      process_line(self, line, out)
    end
  end
  if byte(chunk, e) == CR then
    if e == #chunk then
      self._skip_lf = true
      return done(self, out)
    end
    if byte(chunk, e + 1) == LF then e = e + 1 end
  end
  scan(self, chunk, e + 1, out)
  return done(self, out)
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
  if self._skip_line then incomplete = true end
  if self._pending then
    incomplete = true
    if self.dispatch_incomplete then dispatch(self, out) end
  end
  if not self.dispatch_incomplete then out = {} end
  reset_event(self)
  self._skip_lf = false
  self._skip_line = false
  self._plen = 0
  self._err = nil
  self._bom_checked = false
  self._bom_head = ""
  self.last_event_id = nil
  self.retry = nil
  return out, incomplete
end

local function bound(opts, name, default)
  local v = opts and opts[name]
  if v == nil then return default end
  if type(v) ~= "number" or v < 1 or v ~= v then
    error("bad argument #1 to 'parser' (" .. name .. " must be a positive number)", 3)
  end
  return v
end

--- A new parser for one stream. opts (all optional): dispatch_incomplete,
--- max_line and max_event (bytes; MAX_LINE and MAX_EVENT by default).
function _M.parser(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'parser' (table expected, got " .. type(opts) .. ")", 2)
  end
  -- Every field is made here, those that start nil with a stand-in that
  -- reset_event clears: LuaJIT sizes the hash part once. A field first set
  -- on a full table makes it rehash, dropping the nil ones, and
  -- reset_event's nils then made that happen again at every event.
  local self = setmetatable({
    dispatch_incomplete = opts and opts.dispatch_incomplete and true or false,
    max_line = bound(opts, "max_line", _M.MAX_LINE),
    max_event = bound(opts, "max_event", _M.MAX_EVENT),
    last_event_id = false,
    retry = false,
    _parts = {},
    _nparts = 0,
    _plen = 0,            -- bytes of the pending line's pieces
    _skip_line = false,   -- the rest of an overlong line is being skipped
    _err = false,         -- why something was dropped, for feed to report
    _err_at = 0,          -- and how many events came before it
    _skip_lf = false,
    _bom_checked = false,
    _bom_head = "",
    _data = false, _ndata = 0, _event = false, _retry = false, _pending = false,
    _dsize = 0, _drop = false,
  }, Parser)
  self.last_event_id, self.retry, self._err = nil, nil, nil
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

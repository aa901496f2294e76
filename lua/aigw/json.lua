-- aigw.json -- JSON for LLM wire formats, on lua-cjson 2.1.0.
--
--   local json = require "aigw.json"
--   local body, err = json.decode(s)        -- nil, err on bad JSON; never raises
--   local s, err = json.encode(body)        -- nil, err on values JSON cannot hold
--
-- What plain cjson 2.1.0 gets wrong for these formats, and what is done here:
--
-- * Empty arrays. cjson decodes [] to an empty table and writes every empty
--   table as {}, so {"tools":[]} comes back as {"tools":{}}. decode() marks
--   the arrays that were empty in the input with array_mt; encode() writes
--   an empty table carrying array_mt, and the value empty_array, as [].
--   How: before decoding, every [] outside a string is rewritten to
--   ["<sentinel>"]; after decoding, a walk finds those one-element arrays and
--   empties them. Before encoding, a walk puts "<sentinel>[]" strings in
--   place of the marked empty tables; after encoding the quoted sentinels
--   are replaced by [] and the tables are put back.
-- * Numbers. cjson writes at most 14 significant digits, so 123456789012345
--   becomes 1.2345678901234e+14. Before encoding, every number that %.14g
--   would not reproduce is replaced by a "<sentinel><digits>" string, and
--   the digits are spliced in after: integers as plain digits, other numbers
--   with the fewest of 15-17 significant digits that read back exactly.
--
-- The sentinel holds a per-VM random nonce, so no client data can forge it.
-- When there is nothing to fix, decode costs a plain search for "[" and a
-- look past each one for "]", and encode a walk over the tables (no
-- formatting for integers below 1e14 and numbers of 14 digits or fewer).

local cjson_safe = require "cjson.safe"

local byte, find, format, sub, gsub = string.byte, string.find, string.format, string.sub, string.gsub
local concat = table.concat
local getmetatable, setmetatable, next, type, tonumber, tostring =
      getmetatable, setmetatable, next, type, tonumber, tostring
local huge, floor, log10 = math.huge, math.floor, math.log10

-- A private instance: its settings are ours and do not change `cjson`'s.
local cj = cjson_safe.new()
cj.encode_number_precision(14)   -- the most 2.1.0 allows
cj.decode_invalid_numbers(false) -- reject NaN, Infinity, 0x10: not JSON
cj.encode_invalid_numbers(false) -- NaN and +-Inf cannot be written
local cj_decode, cj_encode = cj.decode, cj.encode

-- Cycles and runaway nesting: the walks stop where cjson would (1000).
local MAX_DEPTH = 1000

local M = {}

M.null = cjson_safe.null

-- setmetatable(t, array_mt) marks t as an array: written as [] when empty.
M.array_mt = { __name = "aigw.json.array" }
local array_mt = M.array_mt

-- A value that is always written as []. It is a userdata, like OpenResty's
-- cjson.empty_array, so that no plugin can put elements into it.
local empty_array = newproxy(true)
getmetatable(empty_array).__tostring = function() return "aigw.json.empty_array" end
getmetatable(empty_array).__metatable = "aigw.json.empty_array"
M.empty_array = empty_array

-- The sentinel: "aigw" and 32 random hex digits.
local function nonce()
  local f = io.open("/dev/urandom", "rb")
  local raw = f and f:read(16)
  if f then f:close() end
  if not raw or #raw ~= 16 then
    local ok, crypto = pcall(require, "aigw.crypto")
    raw = ok and crypto.random_bytes(16)
          or tostring({}) .. tostring(os.time()) .. tostring(os.clock())
  end
  return (gsub(raw, ".", function(c) return format("%02x", byte(c)) end))
end

local SENT = "aigw" .. nonce()
local SENT_ARRAY = '["' .. SENT .. '"]'    -- what a [] outside strings becomes
local SENT_EMPTY = SENT .. "[]"            -- what an empty array is written as

---------------------------------------------------------------------------
-- decode

-- The next "[", optional JSON whitespace, "]" at or after init: start, end.
local function next_empty(s, init)
  while true do
    local c = find(s, "[", init, true)
    if not c then return nil end
    local _, e = find(s, "^[ \t\r\n]*%]", c + 1)
    if e then return c, e end
    init = c + 1
  end
end

-- s with every [] that is outside a string rewritten to SENT_ARRAY, and how
-- many; nil when there is none (or when a string never ends: cjson reports).
local function mark_empty_arrays(s, c, e)
  local parts, np, n = {}, 0, 0
  local pos, last = 1, 1        -- pos is outside any string
  -- The next quote at or after pos, found once and kept across candidates
  -- (false: there is none): searching again from each candidate would be
  -- quadratic in a text with many [] and no quote after them.
  local q = find(s, '"', 1, true) or false
  while c do
    -- Step over the strings that start before the candidate. A quote ends
    -- the string unless an odd number of backslashes precedes it.
    while true do
      if q and q < pos then q = find(s, '"', pos, true) or false end
      if not q or q > c then break end
      local j = q
      while true do
        j = find(s, '"', j + 1, true)
        if not j then return nil end
        local k = j - 1
        while byte(s, k) == 92 do k = k - 1 end
        if (j - k) % 2 == 1 then break end
      end
      pos = j + 1
      if pos > c then break end  -- the candidate was inside that string
    end
    if pos <= c then
      parts[np + 1] = sub(s, last, c - 1)
      parts[np + 2] = SENT_ARRAY
      np, n = np + 2, n + 1
      last, pos = e + 1, e + 1
    end
    c, e = next_empty(s, pos)
  end
  if n == 0 then return nil end
  parts[np + 1] = sub(s, last)
  return concat(parts), n
end

-- Empties the `left` marked arrays under t; returns how many are still to find.
local function unmark(t, left, depth)
  for _, v in next, t do
    if type(v) == "table" then
      if v[1] == SENT and v[2] == nil then
        v[1] = nil
        setmetatable(v, array_mt)
        left = left - 1
      elseif depth < MAX_DEPTH then
        left = unmark(v, left, depth + 1)
      end
      if left == 0 then return 0 end
    end
  end
  return left
end

-- Returns the value, or nil, err. Never raises.
function M.decode(s)
  if type(s) ~= "string" then
    return nil, "expected a string, got " .. type(s)
  end
  -- A raw NUL is never valid JSON, and cjson's parser stops at one: "1\0[]"
  -- would be the number 1 (and the marking below would walk the rest).
  local z = find(s, "\0", 1, true)
  if z then return nil, "NUL character at byte " .. z end
  local c, e = next_empty(s, 1)
  if not c then return cj_decode(s) end
  local marked, n = mark_empty_arrays(s, c, e)
  if not marked then return cj_decode(s) end
  local v = cj_decode(marked)
  if v == nil then return cj_decode(s) end   -- the error, at the input's offsets
  if type(v) ~= "table" then return v end    -- a scalar: no [] was outside a string
  if v[1] == SENT and v[2] == nil then       -- the whole text was []
    v[1] = nil
    setmetatable(v, array_mt)
    n = n - 1
  end
  if n > 0 then unmark(v, n, 1) end
  return v
end

---------------------------------------------------------------------------
-- encode

local POW10 = {}
for i = 0, 22 do POW10[i] = tonumber("1e" .. i) end   -- each exact as a double

-- Whether cjson's %.14g writes v exactly, decided without formatting for
-- the common cases: an integer below 1e14, or a number that some decimal of
-- at most 14 significant digits reads back as. For the latter, r * 10^-p is
-- such a decimal when r / 10^p == |v| (r and 10^p are exact, so the division
-- rounds like strtod). %.14g then writes the nearest such decimal, which
-- reads back as v too. Everything else (and a wrong guess of p) goes to the
-- slow path, exact(), which formats.
local function plain(v)
  if v % 1 == 0 then return v > -1e14 and v < 1e14 end
  local a = v < 0 and -v or v
  if a >= 1e-9 and a < 1e14 then
    local scale = POW10[13 - floor(log10(a))]
    if not scale then return false end
    local r = floor(a * scale + 0.5)
    return r < 1e14 and r / scale == a
  end
  return false
end

-- The text for a number that %.14g would not reproduce, or nil (NaN, Inf:
-- cjson reports those). Integers are written in full, as JSON readers that
-- parse into int64 expect.
local function exact(v)
  if v ~= v or v == huge or v == -huge then return nil end
  if v % 1 == 0 and v > -1e21 and v < 1e21 then return format("%.0f", v) end
  local s = format("%.14g", v)
  if tonumber(s) == v then return nil end
  s = format("%.15g", v)
  if tonumber(s) == v then return s end
  s = format("%.16g", v)
  if tonumber(s) == v then return s end
  return format("%.17g", v)
end

-- Puts sentinel strings in place of the values cjson would write wrongly,
-- recording (table, key, old value) triples in u so they can be put back.
-- u.n counts the entries; u.abort is set when the nesting is too deep (cjson
-- then reports it).
local function prep(t, depth, u)
  for k, v in next, t do
    local tv = type(v)
    if tv == "table" then
      if next(v) == nil then
        if getmetatable(v) == array_mt then
          u = u or { n = 0 }
          local n = u.n
          u[n + 1], u[n + 2], u[n + 3], u.n = t, k, v, n + 3
          t[k] = SENT_EMPTY
        end
      elseif depth < MAX_DEPTH then
        u = prep(v, depth + 1, u)
        if u and u.abort then return u end
      else
        u = u or { n = 0 }
        u.abort = true
        return u
      end
    elseif tv == "number" then
      if not plain(v) then
        local s = exact(v)
        if s then
          u = u or { n = 0 }
          local n = u.n
          u[n + 1], u[n + 2], u[n + 3], u.n = t, k, v, n + 3
          t[k] = SENT .. s
        end
      end
    elseif v == empty_array then
      u = u or { n = 0 }
      local n = u.n
      u[n + 1], u[n + 2], u[n + 3], u.n = t, k, v, n + 3
      t[k] = SENT_EMPTY
    end
  end
  return u
end

-- The encoded text with each quoted sentinel replaced by what follows it
-- up to the closing quote ("[]" or a number's digits).
local function splice(s)
  local parts, np, last = {}, 0, 1
  local i = find(s, SENT, 1, true)
  while i do
    local e = find(s, '"', i, true)
    parts[np + 1] = sub(s, last, i - 2)            -- up to the opening quote
    parts[np + 2] = sub(s, i + #SENT, e - 1)
    np, last = np + 2, e + 1
    i = find(s, SENT, last, true)
  end
  parts[np + 1] = sub(s, last)
  return concat(parts)
end

local function restore(u)
  for i = u.n - 2, 1, -3 do
    u[i][u[i + 1]] = u[i + 2]
  end
end

-- Returns the JSON text, or nil, err. Never raises.
function M.encode(v)
  local tv = type(v)
  if tv == "table" then
    if next(v) == nil then
      if getmetatable(v) == array_mt then return "[]" end
      return "{}"
    end
    local u = prep(v, 1, nil)
    if not u then return cj_encode(v) end
    local s, err = cj_encode(v)
    restore(u)
    if not s then return nil, err end
    if u.n > 0 then s = splice(s) end
    return s
  elseif tv == "number" then
    if not plain(v) then
      local s = exact(v)
      if s then return s end
    end
  elseif v == empty_array then
    return "[]"
  end
  return cj_encode(v)
end

return M

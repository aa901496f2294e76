-- aigw.engine.protocols.raw -- JSON text read as slices, for the translators'
-- fast paths (see docs/translation.md#the-fast-path).
--
-- A fast path translates a body of the common shape by copying the values
-- it passes on unchanged (message texts, ids, numbers) as raw slices of
-- the text, instead of decoding the body into tables and encoding the
-- result. The core's scanner (core/base/json_scan.h) finds the slices and
-- validates every byte it steps over; what is copied is thus always one
-- complete, valid JSON value, escapes as received. A fast path answers nil
-- for anything it does not handle, and the caller runs the general
-- translator on the same text, which then answers as it always has
-- (errors included).
--
--   local raw = require "aigw.engine.protocols.raw"
--   local t = raw.open(text)         -- nil: not a valid object or array, or not one
--                                    -- lua-cjson would decode (aigw_json_escapes_ok);
--                                    -- t.object, t.n: its members in raw.levels[1]
--   local n = raw.members(t, at, len, level)  -- members of the value at [at, at+len)
--   raw.key(t, m), raw.first(t, m), raw.put(buf, t, m)
--
-- Slices are 0-based offsets into the text (the C convention). Each level
-- (1-4) has its own buffer of members, so that a walk can hold a level
-- while it reads the next one down; no call here yields, so the buffers
-- are never shared by two requests at once.

require "aigw.ffi_defs"
local ffi = require "ffi"

local C = ffi.C
local cast, ffi_string = ffi.cast, ffi.string
local byte, find = string.byte, string.find

local M = {}

-- How many members each level holds: past it a fast path gives up.
M.MAX = { 64, 1024, 32, 32 }

local member_t = ffi.typeof("aigw_json_member_t[?]")
local levels = {}
for i, max in ipairs(M.MAX) do levels[i] = member_t(max) end
M.levels = levels

local ccp = ffi.typeof("const char *")

-- The text as the scanner reads it: { s = text, p = pointer }; nil when it is
-- not one object or array of valid JSON, or when lua-cjson would refuse it
-- (a lone UTF-16 surrogate escape). Its members are in levels[1] (count n).
function M.open(s)
  local p = cast(ccp, s)
  local n = C.aigw_json_members(p, #s, levels[1], M.MAX[1])
  if n < 0 or C.aigw_json_escapes_ok(p, #s) == 0 then return nil end
  local at = find(s, "[^ \t\r\n]")
  return { s = s, p = p, n = n, object = byte(s, at) == 123 }
end

-- The members of the container at [at, at + len) into levels[level]:
-- their count, with offsets made relative to the whole text; -1 when it is
-- not a container or holds more than that level's buffer.
function M.members(t, at, len, level)
  local buf = levels[level]
  local n = C.aigw_json_members(t.p + at, len, buf, M.MAX[level])
  if n < 0 then return -1 end
  for i = 0, n - 1 do
    local m = buf[i]
    if m.ks >= 0 then m.ks, m.ke = m.ks + at, m.ke + at end
    m.vs, m.ve = m.vs + at, m.ve + at
  end
  return n
end

-- A member's name, or nil when it is written with escapes (it could
-- decode to any name: a fast path gives up on it).
function M.key(t, m)
  local k = ffi_string(t.p + m.ks, m.ke - m.ks)
  if find(k, "\\", 1, true) then return nil end
  return k
end

-- The first byte of a member's value: 34 ("), 123 ({), 91 ([), 116 (true),
-- 102 (false), 110 (null), or a number's.
function M.first(t, m)
  return byte(t.s, m.vs + 1)
end

-- A string value's text without its quotes, or nil when it is not a string
-- or holds escapes (for names compared with known ones: roles, stop
-- reasons).
function M.plain(t, m)
  if byte(t.s, m.vs + 1) ~= 34 then return nil end
  local v = ffi_string(t.p + m.vs + 1, m.ve - m.vs - 2)
  if find(v, "\\", 1, true) then return nil end
  return v
end

-- Whether a number value is written without an exponent and in at most
-- 32 bytes: it then reads back as the same finite double wherever it is
-- decoded, so it can be copied as it is.
function M.short_number(t, m)
  local len = m.ve - m.vs
  if len > 32 then return false end
  local p = t.p + m.vs
  local c = p[0]
  if c ~= 45 and (c < 48 or c > 57) then return false end
  for i = 1, len - 1 do
    c = p[i]
    if c == 101 or c == 69 then return false end
  end
  return true
end

-- The value of a non-negative integer written in at most 12 digits, else
-- nil (a token count: sums of a few stay below 1e14, written exactly by
-- tostring and string.buffer).
function M.count(t, m)
  local len = m.ve - m.vs
  if len > 12 then return nil end
  local p = t.p + m.vs
  local v = 0
  for i = 0, len - 1 do
    local c = p[i]
    if c < 48 or c > 57 then return nil end
    v = v * 10 + (c - 48)
  end
  return v
end

-- Appends a member's value, as written, to a string.buffer.
function M.put(buf, t, m)
  buf:putcdata(t.p + m.vs, m.ve - m.vs)
end

-- Appends a string value's text without its quotes (escapes as written).
function M.put_inner(buf, t, m)
  buf:putcdata(t.p + m.vs + 1, m.ve - m.vs - 2)
end

return M

-- aigw.engine.protocols.raw -- JSON text read as slices, for the translators'
-- fast paths (see docs/translation.md#the-fast-path).
--
-- A fast path translates a body of the common shape by copying the values
-- it passes on unchanged (message texts, ids, numbers) as raw slices of
-- the text, instead of decoding the body into tables and encoding the
-- result. The core's scanner (aigw_json_index, core/base/json_scan.h)
-- validates the whole text in one pass and lists its values down to a
-- few levels; what is copied is thus always one complete, valid JSON
-- value, escapes as received. A fast path answers nil for anything it does
-- not handle, and the caller runs the general translator on the same
-- text, which then answers as it always has (errors included).
--
--   local raw = require "aigw.engine.protocols.raw"
--   local t = raw.open(text)     -- nil: not valid JSON, not an object, or not
--                                -- what lua-cjson decodes (aigw_json_escapes_ok)
--   local nodes = raw.nodes      -- nodes[0] the object, its members from nodes[1]
--   local i = 1
--   while i < nodes[0].next do   -- each member of the object
--     local k = raw.key(t, nodes[i]) ; ... ; i = nodes[i].next
--   end
--
-- Offsets are 0-based (the C convention). The nodes live in one buffer,
-- valid until the next open; no call here yields, so it is never shared
-- by two requests at once.

require "aigw.ffi_defs"
local ffi = require "ffi"

local C = ffi.C
local cast, ffi_string = ffi.cast, ffi.string
local byte, find = string.byte, string.find

local M = {}

-- Values listed: the object, its members, their elements or members, and
-- theirs (a request's messages and each message's members; an answer's
-- blocks and each block's members). Past MAX nodes a fast path gives up.
M.LEVELS = 3
M.MAX = 4096

local nodes = ffi.new("aigw_json_node_t[?]", M.MAX)
M.nodes = nodes

local ccp = ffi.typeof("const char *")

-- The text as the scanner reads it: { s = text, p = pointer, n = nodes };
-- nil when it is not one object of valid JSON, when it has more than MAX
-- values down to LEVELS, or when lua-cjson would refuse it (a lone UTF-16
-- surrogate escape).
function M.open(s)
  local p = cast(ccp, s)
  local n = C.aigw_json_index(p, #s, nodes, M.MAX, M.LEVELS)
  if n < 1 or byte(s, nodes[0].vs + 1) ~= 123 or C.aigw_json_escapes_ok(p, #s) == 0 then
    return nil
  end
  return { s = s, p = p, n = n }
end

-- A member's name, or nil when it is written with escapes (it could
-- decode to any name: a fast path gives up on it).
function M.key(t, m)
  local k = ffi_string(t.p + m.ks, m.ke - m.ks)
  if find(k, "\\", 1, true) then return nil end
  return k
end

-- The first byte of a value: 34 ("), 123 ({), 91 ([), 116 (true),
-- 102 (false), 110 (null), or a number's.
function M.first(t, m)
  return t.p[m.vs]
end

-- A string value's text without its quotes, or nil when it is not a string
-- or holds escapes (for names compared with known ones: roles, stop
-- reasons).
function M.plain(t, m)
  if t.p[m.vs] ~= 34 then return nil end
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

-- Appends a value, as written, to a string.buffer.
function M.put(buf, t, m)
  buf:putcdata(t.p + m.vs, m.ve - m.vs)
end

return M

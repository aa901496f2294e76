-- aigw.crypto -- hashing, HMAC, base64, random bytes and comparison from
-- OpenSSL 3, through the FFI.
--
--   local crypto = require "aigw.crypto"
--   crypto.hmac_sha256_hex(secret, body)       -- "5bdc..."
--   crypto.base64url_encode(crypto.random_bytes(16))
--
-- Nothing here takes a lock that all workers share on each call. In OpenSSL
-- 3, SHA256(), HMAC() and EVP_Digest() look the algorithm up (under the
-- library's locks) every time, and RAND_bytes() takes a global write lock.
-- So the SHA-256 method and the HMAC method are fetched once per VM and
-- each VM keeps one digest context and one MAC context, re-initialised per
-- call; random bytes come from the calling thread's public DRBG. A context
-- is used from the start to the end of one call, which never yields, so
-- coroutines cannot share one half-way.
--
-- Wrong argument types raise "bad argument #n to 'fn' (...)". Decoders
-- return nil, err for bad input. An OpenSSL failure (out of memory) raises.

local ffi = require "ffi"
local bit = require "bit"
require "aigw.ffi_defs"

local C = ffi.C
local ffi_new, ffi_string, ffi_cast, ffi_gc = ffi.new, ffi.string, ffi.cast, ffi.gc
local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift
local byte, type, error, floor = string.byte, type, error, math.floor

local M = {}

local function argerror(n, fn, expected, v)
  error("bad argument #" .. n .. " to '" .. fn .. "' (" .. expected .. " expected, got "
        .. type(v) .. ")", 3)
end

local function check_string(n, fn, v)
  if type(v) ~= "string" then argerror(n, fn, "string", v) end
end

-- A scratch buffer for results, kept while it is small; larger ones are
-- allocated per call (and collected).
local SCRATCH_MAX = 65536
local scratch, scratch_size = ffi_new("unsigned char[?]", 1024), 1024

local function buffer(n)
  if n <= scratch_size then return scratch end
  if n > SCRATCH_MAX then return ffi_new("unsigned char[?]", n) end
  local size = scratch_size
  while size < n do size = size * 2 end
  scratch, scratch_size = ffi_new("unsigned char[?]", size), size
  return scratch
end

local u8p = ffi.typeof("const unsigned char *")
local md = ffi_new("unsigned char[64]")
local md_len = ffi_new("unsigned int[1]")
local mac_len = ffi_new("size_t[1]")

local HEX = ffi_new("const char[16]", "0123456789abcdef")
local hexbuf = ffi_new("char[128]")

-- Lower-case hex of the n (<= 64) bytes at p.
local function hex(p, n)
  for i = 0, n - 1 do
    local b = p[i]
    hexbuf[2 * i] = HEX[rshift(b, 4)]
    hexbuf[2 * i + 1] = HEX[band(b, 15)]
  end
  return ffi_string(hexbuf, 2 * n)
end

---------------------------------------------------------------------------
-- SHA-256 and HMAC-SHA256

local sha256_md, digest_ctx       -- fetched on first use

local function digest_init()
  local m = C.EVP_MD_fetch(nil, "SHA256", nil)
  if m == nil then error("aigw.crypto: SHA256 is not available", 3) end
  sha256_md = ffi_gc(m, C.EVP_MD_free)
  local ctx = C.EVP_MD_CTX_new()
  if ctx == nil then error("aigw.crypto: out of memory", 3) end
  digest_ctx = ffi_gc(ctx, C.EVP_MD_CTX_free)
end

-- The 32-byte digest of s, left in md.
local function sha256_raw(s)
  if not digest_ctx then digest_init() end
  if C.EVP_DigestInit_ex2(digest_ctx, sha256_md, nil) ~= 1
     or C.EVP_DigestUpdate(digest_ctx, s, #s) ~= 1
     or C.EVP_DigestFinal_ex(digest_ctx, md, md_len) ~= 1 then
    error("aigw.crypto: SHA-256 failed", 3)
  end
end

-- Raw 32-byte SHA-256 digest of s.
function M.sha256(s)
  check_string(1, "sha256", s)
  sha256_raw(s)
  return ffi_string(md, 32)
end

-- SHA-256 digest of s as 64 lower-case hex digits.
function M.sha256_hex(s)
  check_string(1, "sha256_hex", s)
  sha256_raw(s)
  return hex(md, 32)
end

local mac_ctx                     -- an HMAC context set to SHA-256, made on first use

local function mac_init()
  local mac = C.EVP_MAC_fetch(nil, "HMAC", nil)
  if mac == nil then error("aigw.crypto: HMAC is not available", 3) end
  mac = ffi_gc(mac, C.EVP_MAC_free)
  local ctx = C.EVP_MAC_CTX_new(mac)
  if ctx == nil then error("aigw.crypto: out of memory", 3) end
  ctx = ffi_gc(ctx, C.EVP_MAC_CTX_free)
  local name = ffi_new("char[7]", "SHA256")
  local params = ffi_new("OSSL_PARAM[2]")
  params[0] = C.OSSL_PARAM_construct_utf8_string("digest", name, 0)
  params[1] = C.OSSL_PARAM_construct_end()
  if C.EVP_MAC_CTX_set_params(ctx, params) ~= 1 then
    error("aigw.crypto: HMAC-SHA256 is not available", 3)
  end
  mac_ctx = ctx
end

-- HMAC-SHA256 of msg under key, left in md. The context keeps its digest
-- between calls: only the key is set each time.
local function hmac_raw(key, msg)
  if not mac_ctx then mac_init() end
  if C.EVP_MAC_init(mac_ctx, key, #key, nil) ~= 1
     or C.EVP_MAC_update(mac_ctx, msg, #msg) ~= 1
     or C.EVP_MAC_final(mac_ctx, md, mac_len, 64) ~= 1 then
    error("aigw.crypto: HMAC-SHA256 failed", 3)
  end
end

-- Raw 32-byte HMAC-SHA256 (RFC 2104) of msg under key.
function M.hmac_sha256(key, msg)
  check_string(1, "hmac_sha256", key)
  check_string(2, "hmac_sha256", msg)
  hmac_raw(key, msg)
  return ffi_string(md, 32)
end

-- HMAC-SHA256 of msg under key as 64 lower-case hex digits.
function M.hmac_sha256_hex(key, msg)
  check_string(1, "hmac_sha256_hex", key)
  check_string(2, "hmac_sha256_hex", msg)
  hmac_raw(key, msg)
  return hex(md, 32)
end

---------------------------------------------------------------------------
-- base64 (RFC 4648 sections 4 and 5)

local MAX_ENCODE = 0x5FFFFFFF     -- EVP_EncodeBlock takes an int length

-- Encodes s into a buffer with EVP_EncodeBlock: buffer, length (padded).
local function encode_block(fn, s)
  check_string(1, fn, s)
  local n = #s
  if n > MAX_ENCODE then error("bad argument #1 to '" .. fn .. "' (string too long)", 3) end
  local out = buffer(floor((n + 2) / 3) * 4 + 1)
  return out, C.EVP_EncodeBlock(out, s, n)
end

-- Standard alphabet, with "=" padding.
function M.base64_encode(s)
  local out, len = encode_block("base64_encode", s)
  return ffi_string(out, len)
end

-- URL and filename safe alphabet ("-" and "_"), without padding.
function M.base64url_encode(s)
  local out, len = encode_block("base64url_encode", s)
  while len > 0 and out[len - 1] == 61 do len = len - 1 end      -- "="
  for i = 0, len - 1 do
    local c = out[i]
    if c == 43 then out[i] = 45 elseif c == 47 then out[i] = 95 end  -- "+" "/"
  end
  return ffi_string(out, len)
end

-- Decoding tables: the 6-bit value of each byte, -1 for bytes outside the
-- alphabet (so a bor() of four lookups is negative when any is bad).
local function decode_table(c62, c63)
  local t = ffi_new("int16_t[256]")
  for i = 0, 255 do t[i] = -1 end
  local abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" .. c62 .. c63
  for i = 1, 64 do t[byte(abc, i)] = i - 1 end
  return t
end
local DEC_STD = decode_table("+", "/")
local DEC_URL = decode_table("-", "_")

-- Padding is optional; if present it must make the length a multiple of 4.
-- Bits left over in the last character are ignored. Anything else outside
-- the alphabet (including whitespace and line breaks) is an error.
local function decode(s, dec)
  local n = #s
  if n % 4 == 0 and n > 0 and byte(s, n) == 61 then
    n = n - 1
    if byte(s, n) == 61 then n = n - 1 end
  end
  local rest = n % 4
  if rest == 1 then return nil, "invalid base64 length" end
  local full = n - rest
  local out = buffer(full / 4 * 3 + 2)
  local p = ffi_cast(u8p, s)
  local j = 0
  for i = 0, full - 1, 4 do
    local a, b, c, d = dec[p[i]], dec[p[i + 1]], dec[p[i + 2]], dec[p[i + 3]]
    if bor(a, b, c, d) < 0 then return nil, "invalid base64 character" end
    local v = bor(lshift(a, 18), lshift(b, 12), lshift(c, 6), d)
    out[j], out[j + 1], out[j + 2] = rshift(v, 16), rshift(v, 8), v
    j = j + 3
  end
  if rest > 0 then
    local a, b = dec[p[full]], dec[p[full + 1]]
    local c = rest == 3 and dec[p[full + 2]] or 0
    if bor(a, b, c) < 0 then return nil, "invalid base64 character" end
    local v = bor(lshift(a, 18), lshift(b, 12), lshift(c, 6))
    out[j] = rshift(v, 16)
    j = j + 1
    if rest == 3 then
      out[j] = rshift(v, 8)
      j = j + 1
    end
  end
  return ffi_string(out, j)
end

-- Returns the decoded bytes, or nil, err.
function M.base64_decode(s)
  check_string(1, "base64_decode", s)
  return decode(s, DEC_STD)
end

function M.base64url_decode(s)
  check_string(1, "base64url_decode", s)
  return decode(s, DEC_URL)
end

---------------------------------------------------------------------------
-- random bytes

-- n bytes from OpenSSL's CSPRNG (the calling thread's public DRBG).
function M.random_bytes(n)
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 or n > 0x7FFFFFFF then
    error("bad argument #1 to 'random_bytes' (non-negative integer expected, got "
          .. (type(n) == "number" and n or type(n)) .. ")", 2)
  end
  if n == 0 then return "" end
  local out = buffer(n)
  local drbg = C.RAND_get0_public(nil)
  local ok
  if drbg ~= nil then
    ok = C.EVP_RAND_generate(drbg, out, n, 0, 0, nil, 0) == 1
  else
    ok = C.RAND_bytes(out, n) == 1
  end
  if not ok then error("aigw.crypto: random_bytes failed (RAND_bytes)", 2) end
  return ffi_string(out, n)
end

---------------------------------------------------------------------------
-- comparison

-- Compares two strings in time that depends only on their lengths: a
-- length mismatch still compares len(a) bytes (against a itself).
function M.equal(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then
    error("bad argument to 'equal' (strings expected)", 2)
  end
  if #a ~= #b then
    C.CRYPTO_memcmp(a, a, #a)
    return false
  end
  return C.CRYPTO_memcmp(a, b, #a) == 0
end

return M

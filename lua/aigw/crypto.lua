-- aigw.crypto -- hashing and comparison from OpenSSL, through the FFI.

local ffi = require "ffi"
require "aigw.ffi_defs"

local C = ffi.C
local M = {}

local md = ffi.new("unsigned char[32]")

-- Raw 32-byte SHA-256 digest of s.
function M.sha256(s)
  if type(s) ~= "string" then
    error("bad argument #1 to 'sha256' (string expected, got " .. type(s) .. ")", 2)
  end
  C.SHA256(s, #s, md)
  return ffi.string(md, 32)
end

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

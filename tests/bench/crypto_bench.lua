-- aigw.crypto micro-benchmark: nanoseconds per call, next to the OpenSSL 3
-- one-shot functions it avoids (SHA256(), HMAC(), RAND_bytes()), which
-- look algorithms up or take global locks on every call.
--
--   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libcrypto.so.3 luajit tests/bench/crypto_bench.lua
--
-- Under plain luajit libcrypto must be preloaded so that ffi.C finds it; in
-- aigw it is linked into the binary.

local dir = (arg and arg[0] or ""):match("^(.*)/tests/bench/[^/]*$") or "."
package.path = dir .. "/lua/?.lua;" .. dir .. "/lua/?/init.lua;" .. package.path

local ffi = require "ffi"
local crypto = require "aigw.crypto"
require "aigw.ffi_defs"   -- declares HMAC() and EVP_sha256() too
local C = ffi.C

local SECONDS = tonumber(os.getenv("SECONDS_PER_CASE")) or 0.3

local function time(f, a, b)
  local best = math.huge
  for _ = 1, 3 do
    local n, t0 = 0, os.clock()
    local elapsed
    repeat
      for _ = 1, 1000 do f(a, b) end
      n = n + 1000
      elapsed = os.clock() - t0
    until elapsed >= SECONDS / 3
    best = math.min(best, elapsed / n)
  end
  return best * 1e9
end

local md = ffi.new("unsigned char[32]")
local mdlen = ffi.new("unsigned int[1]")
local rnd = ffi.new("unsigned char[64]")
local msg64, msg1k = string.rep("m", 64), string.rep("m", 1024)
local key = string.rep("k", 32)
local b64_1k = crypto.base64_encode(msg1k)
local b64url_1k = crypto.base64url_encode(msg1k)

local rows = {
  { "sha256(64 B)", crypto.sha256, msg64 },
  { "sha256_hex(64 B)", crypto.sha256_hex, msg64 },
  { "SHA256() one-shot (64 B), for comparison", function(s) C.SHA256(s, #s, md) end, msg64 },
  { "hmac_sha256(32 B key, 64 B)", crypto.hmac_sha256, key, msg64 },
  { "hmac_sha256_hex(32 B key, 64 B)", crypto.hmac_sha256_hex, key, msg64 },
  { "hmac_sha256(32 B key, 1 KB)", crypto.hmac_sha256, key, msg1k },
  { "HMAC() one-shot (64 B), for comparison",
    function(k, s) C.HMAC(C.EVP_sha256(), k, #k, s, #s, md, mdlen) end, key, msg64 },
  { "random_bytes(16)", crypto.random_bytes, 16 },
  { "RAND_bytes(16), for comparison", function(n) C.RAND_bytes(rnd, n) end, 16 },
  { "base64_encode(1 KB)", crypto.base64_encode, msg1k },
  { "base64_decode(1 KB)", crypto.base64_decode, b64_1k },
  { "base64url_encode(1 KB)", crypto.base64url_encode, msg1k },
  { "base64url_decode(1 KB)", crypto.base64url_decode, b64url_1k },
  { "equal(32 B, 32 B)", crypto.equal, key, string.rep("k", 32) },
}

print("| call | ns |")
print("|---|---:|")
for _, r in ipairs(rows) do
  print(string.format("| %s | %.0f |", r[1], time(r[2], r[3], r[4])))
end

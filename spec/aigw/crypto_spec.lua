-- aigw.crypto: SHA-256, HMAC-SHA256, base64, random bytes, comparison.

local crypto = require "aigw.crypto"

local function unhex(h)
  return (h:gsub("%s", ""):gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

local function tohex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

describe("aigw.crypto", function()
  describe("sha256", function()
    -- FIPS 180-2 appendix B and common vectors.
    local vectors = {
      { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
      { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
      { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
      { string.rep("a", 1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
    }

    it("gives the raw digest", function()
      for _, v in ipairs(vectors) do
        local d = crypto.sha256(v[1])
        assert.are.equal(32, #d)
        assert.are.equal(v[2], tohex(d))
      end
    end)

    it("gives the hex digest", function()
      for _, v in ipairs(vectors) do assert.are.equal(v[2], crypto.sha256_hex(v[1])) end
    end)

    it("hashes binary data and gives the same answer every time", function()
      local s = "a\0b\255"
      assert.are.equal(crypto.sha256_hex(s), crypto.sha256_hex(s))
      assert.are_not.equal(crypto.sha256_hex("a"), crypto.sha256_hex("a\0"))
    end)

    it("raises for a value that is not a string", function()
      assert.has_error(function() crypto.sha256(nil) end,
                       "bad argument #1 to 'sha256' (string expected, got nil)")
      assert.has_error(function() crypto.sha256_hex(1) end,
                       "bad argument #1 to 'sha256_hex' (string expected, got number)")
    end)
  end)

  describe("hmac_sha256", function()
    -- RFC 4231 section 4 (test case 5 is truncated to 128 bits).
    local cases = {
      { key = string.rep("\11", 20), data = "Hi There",
        mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
      { key = "Jefe", data = "what do ya want for nothing?",
        mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
      { key = string.rep("\170", 20), data = string.rep("\221", 50),
        mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
      { key = unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), data = string.rep("\205", 50),
        mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
      { key = string.rep("\12", 20), data = "Test With Truncation",
        mac = "a3b6167473100ee06e0c796c2955552b", truncate = 16 },
      { key = string.rep("\170", 131), data = "Test Using Larger Than Block-Size Key - Hash Key First",
        mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
      { key = string.rep("\170", 131),
        data = "This is a test using a larger than block-size key and a larger than block-size data. "
            .. "The key needs to be hashed before being used by the HMAC algorithm.",
        mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
    }

    it("matches the RFC 4231 vectors, raw and hex", function()
      for i, c in ipairs(cases) do
        local raw = crypto.hmac_sha256(c.key, c.data)
        local hx = crypto.hmac_sha256_hex(c.key, c.data)
        assert.are.equal(32, #raw)
        assert.are.equal(tohex(raw), hx)
        assert.are.equal(c.mac, hx:sub(1, (c.truncate or 32) * 2), "case " .. i)
      end
    end)

    it("takes an empty key and an empty message", function()
      assert.are.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
                       crypto.hmac_sha256_hex("", ""))
    end)

    it("uses each call's own key", function()
      local a = crypto.hmac_sha256_hex("k1", "m")
      local b = crypto.hmac_sha256_hex("k2", "m")
      assert.are_not.equal(a, b)
      assert.are.equal(a, crypto.hmac_sha256_hex("k1", "m"))
      assert.are_not.equal(crypto.hmac_sha256_hex("k\0x", "m"), crypto.hmac_sha256_hex("k\0y", "m"))
    end)

    it("raises for arguments that are not strings", function()
      assert.has_error(function() crypto.hmac_sha256(nil, "m") end,
                       "bad argument #1 to 'hmac_sha256' (string expected, got nil)")
      assert.has_error(function() crypto.hmac_sha256_hex("k", {}) end,
                       "bad argument #2 to 'hmac_sha256_hex' (string expected, got table)")
    end)
  end)

  describe("base64", function()
    -- RFC 4648 section 10.
    local vectors = {
      { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
      { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
    }

    it("encodes the RFC 4648 vectors with padding", function()
      for _, v in ipairs(vectors) do assert.are.equal(v[2], crypto.base64_encode(v[1])) end
    end)

    it("decodes them with and without padding", function()
      for _, v in ipairs(vectors) do
        assert.are.equal(v[1], crypto.base64_decode(v[2]))
        assert.are.equal(v[1], crypto.base64_decode((v[2]:gsub("=", ""))))
      end
    end)

    it("uses + and / in the standard alphabet", function()
      assert.are.equal("+/+/", crypto.base64_encode("\251\255\191"))
      assert.are.equal("\251\255\191", crypto.base64_decode("+/+/"))
    end)

    it("returns nil and an error for invalid input", function()
      local bad = { "Z", "Zg=", "Zg===", "Z===", "Zm9v=", "=Zm9", "Zm=v", "Zm9v\n", " Zm9v", "Zm9v YmFy",
                    "Zm9-", "Zm9_", "Zm9\0", "\128\128\128\128", "Zm9vY" }
      for _, s in ipairs(bad) do
        local v, err = crypto.base64_decode(s)
        assert.is_nil(v, s)
        assert.is_string(err, s)
      end
    end)

    it("round-trips every byte value and every length", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      for n = 0, 70 do
        local s = all:sub(1, n) .. all:sub(256 - n)
        assert.are.equal(s, crypto.base64_decode(crypto.base64_encode(s)))
      end
      local big = string.rep(all, 1000)
      assert.are.equal(big, crypto.base64_decode(crypto.base64_encode(big)))
    end)

    it("raises for a value that is not a string", function()
      assert.has_error(function() crypto.base64_encode(nil) end,
                       "bad argument #1 to 'base64_encode' (string expected, got nil)")
      assert.has_error(function() crypto.base64_decode(false) end,
                       "bad argument #1 to 'base64_decode' (string expected, got boolean)")
    end)
  end)

  describe("base64url", function()
    it("encodes the RFC 4648 vectors without padding", function()
      local vectors = { { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
                        { "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" } }
      for _, v in ipairs(vectors) do
        assert.are.equal(v[2], crypto.base64url_encode(v[1]))
        assert.are.equal(v[1], crypto.base64url_decode(v[2]))
      end
    end)

    it("uses - and _ and accepts padding on decode", function()
      assert.are.equal("-_-_", crypto.base64url_encode("\251\255\191"))
      assert.are.equal("-_8", crypto.base64url_encode("\251\255"))
      assert.are.equal("\251\255", crypto.base64url_decode("-_8"))
      assert.are.equal("\251\255", crypto.base64url_decode("-_8="))
      assert.are.equal("f", crypto.base64url_decode("Zg=="))
    end)

    it("decodes a JWT header", function()
      assert.are.equal('{"alg":"HS256","typ":"JWT"}',
                       crypto.base64url_decode("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"))
    end)

    it("returns nil and an error for invalid input", function()
      for _, s in ipairs({ "Z", "+/8", "ab/c", "Zg=", "Zg===", "Zm 9v", "Zm9v." }) do
        local v, err = crypto.base64url_decode(s)
        assert.is_nil(v, s)
        assert.is_string(err, s)
      end
    end)

    it("round-trips random data of every length", function()
      for n = 0, 100 do
        local s = crypto.random_bytes(n)
        local e = crypto.base64url_encode(s)
        assert.is_nil(e:find("[^%w_-]"))
        assert.are.equal(s, crypto.base64url_decode(e))
      end
    end)
  end)

  describe("random_bytes", function()
    it("returns n bytes, different each time", function()
      assert.are.equal("", crypto.random_bytes(0))
      assert.are.equal(1, #crypto.random_bytes(1))
      local a, b = crypto.random_bytes(32), crypto.random_bytes(32)
      assert.are.equal(32, #a)
      assert.are_not.equal(a, b)
      assert.are.equal(200000, #crypto.random_bytes(200000))
    end)

    it("uses every byte value", function()
      local seen, count = {}, 0
      local s = crypto.random_bytes(65536)
      for i = 1, #s do
        local c = s:byte(i)
        if not seen[c] then seen[c], count = true, count + 1 end
      end
      assert.are.equal(256, count)
    end)

    it("raises for a count that is not a non-negative integer", function()
      for _, n in ipairs({ -1, 1.5, 0 / 0, math.huge }) do
        assert.has_error(function() crypto.random_bytes(n) end)
      end
      assert.has_error(function() crypto.random_bytes("16") end,
                       "bad argument #1 to 'random_bytes' (non-negative integer expected, got string)")
      assert.has_error(function() crypto.random_bytes() end)
    end)
  end)

  describe("equal", function()
    it("compares strings", function()
      assert.is_true(crypto.equal("", ""))
      assert.is_true(crypto.equal("secret", "secret"))
      assert.is_false(crypto.equal("secret", "secreT"))
      assert.is_false(crypto.equal("secret", "secret!"))
      assert.is_false(crypto.equal("secret!", "secret"))
      assert.is_false(crypto.equal("", "x"))
      assert.is_true(crypto.equal("a\0b", "a\0b"))
      assert.is_false(crypto.equal("a\0b", "a\0c"))
    end)

    it("raises unless both are strings", function()
      assert.has_error(function() crypto.equal("a", nil) end, "bad argument to 'equal' (strings expected)")
      assert.has_error(function() crypto.equal(1, "1") end, "bad argument to 'equal' (strings expected)")
    end)
  end)
end)

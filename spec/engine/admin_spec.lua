-- aigw.engine.admin: who may use the admin listener, and the handler's call of it
-- before any plugin. The peers here are not all loopback, which a real
-- socket in the integration tests cannot be.

local h = require "aigw.test.helpers"
local admin = require "aigw.engine.admin"
local runtime = require "aigw.engine.runtime"
local cjson = require "cjson"

local KEYS = { "adm-one", "adm-two" }

-- check's answer for a request on the admin listener: nil (served) or the
-- status and the error's code.
local function check(keys, opts)
  opts.admin = true
  opts.path = opts.path or "/admin/status"
  local status, body, headers = h.with_request(h.request(opts), admin.check, keys)
  if status == nil then return nil end
  return status, cjson.decode(body).error, headers
end

describe("aigw.engine.admin", function()
  describe("loopback_host", function()
    it("takes 127.0.0.0/8, [::1] and localhost, with or without a port", function()
      for _, host in ipairs({ "127.0.0.1", "127.0.0.1:9090", "localhost", "localhost:1", "LocalHost:65535",
                              "[::1]", "[::1]:9090", "127.1.2.3:80", "127.255.255.255" }) do
        assert.is_true(admin.loopback_host(host), host)
      end
    end)

    it("refuses every name a DNS record could point at us, and other addresses", function()
      for _, host in ipairs({ "evil.example", "evil.example:9090", "localhost.evil.example",
                              "127.0.0.1.nip.io:9090", "127.0.0.1:9090.evil.example", "localhost:", "localhost:x",
                              "localhost:123456", "localhost:9090@evil.example", "10.0.0.1", "128.0.0.1",
                              "127.0.0.256", "127.0.0.1.", "localhost.", "[::2]", "[::1", "[::1]x", "::1",
                              "[::ffff:127.0.0.1]", "", " localhost", "localhost ", "127.0.0", "0127.0.0.1" }) do
        assert.is_false(admin.loopback_host(host), host)
      end
      assert.is_false(admin.loopback_host(nil))
    end)
  end)

  describe("check, with admin keys", function()
    it("serves an admin key from any peer, with any Host or Origin", function()
      for _, client in ipairs({ "127.0.0.1", "10.0.0.1", "2001:db8::1" }) do
        assert.is_nil(check(KEYS, { client = client, headers = { authorization = "Bearer adm-two",
                                    host = "evil.example", origin = "http://evil.example" } }))
        assert.is_nil(check(KEYS, { client = client, headers = { ["x-api-key"] = "adm-one" } }))
      end
    end)

    it("answers 401 with WWW-Authenticate when no key is sent", function()
      for _, hdrs in ipairs({ {}, { authorization = "Bearer " }, { authorization = "Basic YTpi" } }) do
        local status, err, headers = check(KEYS, { client = "10.0.0.1", headers = hdrs })
        assert.equal(401, status)
        assert.equal("missing_admin_key", err.code)
        assert.equal("authentication_error", err.type)
        assert.matches('WWW-Authenticate: Bearer realm="aigw admin"\r\n', headers, 1, true)
      end
    end)

    it("answers 403 to any other key, a loopback peer's too", function()
      for _, key in ipairs({ "gw-key", "adm-on", "adm-onex", "ADM-ONE", "adm-one\0" }) do
        local status, err = check(KEYS, { headers = { authorization = "Bearer " .. key, host = "localhost" } })
        assert.equal(403, status)
        assert.equal("invalid_admin_key", err.code)
        assert.equal("permission_error", err.type)
      end
    end)
  end)

  describe("check, without admin keys", function()
    it("serves a loopback peer that names a loopback Host and sends no Origin", function()
      assert.is_nil(check({}, { headers = { host = "127.0.0.1:9090" } }))
      assert.is_nil(check({}, { client = "::1", headers = { host = "[::1]:9090" } }))
    end)

    it("refuses any other peer, whatever it sends", function()
      for _, client in ipairs({ "10.0.0.1", "192.0.2.7", "2001:db8::1", "::ffff:10.0.0.1" }) do
        local status, err = check({}, { client = client, headers = { host = "localhost", authorization = "Bearer x" } })
        assert.equal(403, status)
        assert.equal("loopback_only", err.code)
        assert.equal("permission_error", err.type)
      end
    end)

    it("refuses a request with an Origin (a browser)", function()
      for _, origin in ipairs({ "http://evil.example", "null", "http://127.0.0.1:9090", "" }) do
        local status, err = check({}, { method = "POST", path = "/admin/reload",
                                        headers = { host = "127.0.0.1:9090", origin = origin,
                                                    ["content-type"] = "text/plain" } })
        assert.equal(403, status)
        assert.equal("origin_not_allowed", err.code)
      end
    end)

    it("refuses a Host that is not a loopback address (DNS rebinding), or none", function()
      for _, hdrs in ipairs({ { host = "evil.example:9090" }, { host = "localhost.evil.example" }, {} }) do
        local status, err = check({}, { headers = hdrs })
        assert.equal(403, status)
        assert.equal("host_not_allowed", err.code)
      end
    end)
  end)

  describe("the handler on the admin listener", function()
    local conf_path, phases
    local function conf(text)
      conf_path = os.tmpname()
      local f = assert(io.open(conf_path, "wb"))
      f:write(text)
      f:close()
      phases = runtime.init_worker(conf_path, 1)
    end
    after_each(function() os.remove(conf_path) end)

    local function handle(opts)
      opts.admin = true
      return h.with_request(h.request(opts), phases.handler, {})
    end

    it("decides before any plugin, and key-auth's keys are not admin keys", function()
      conf([[ return { api_keys = { "gw-key" }, admin_keys = { "adm-one" }, plugins = { "key-auth" } } ]])
      local status, body = handle{ path = "/admin/status", headers = { authorization = "Bearer gw-key" } }
      assert.equal(403, status)
      assert.equal("invalid_admin_key", cjson.decode(body).error.code)
      status, body = handle{ path = "/admin/nothing", headers = { authorization = "Bearer adm-one" } }
      assert.equal(404, status)
      assert.equal("no such admin endpoint: /admin/nothing", cjson.decode(body).error.message)
      status = handle{ method = "POST", path = "/status", headers = { authorization = "Bearer adm-one" } }
      assert.equal(405, status)
    end)

    it("guards admin paths with no plugin at all", function()
      conf([[ return { admin_keys = "adm-one, adm-two", plugins = {} } ]])
      assert.equal(401, (handle{ path = "/admin/status" }))
      conf([[ return { plugins = {} } ]])
      assert.equal(403, (handle{ path = "/admin/status", client = "10.0.0.1", headers = { host = "localhost" } }))
      assert.equal(403, (handle{ path = "/status", headers = { host = "localhost", origin = "null" } }))
    end)

    it("serves /metrics to anyone", function()
      conf([[ return { api_keys = { "gw-key" }, admin_keys = { "adm-one" }, plugins = { "key-auth" } } ]])
      local status, body, headers = handle{ path = "/metrics", client = "10.0.0.1" }
      assert.equal(200, status)
      assert.matches("Content-Type: text/plain", headers, 1, true)
      assert.matches("# HELP aigw_log_lines_dropped_total ", body, 1, true)
      assert.matches("# TYPE aigw_log_lines_dropped_total counter\n", body, 1, true)
      assert.matches("\naigw_log_lines_dropped_total %d+\n$", body)
      conf([[ return { plugins = { "key-auth" } } ]])
      assert.equal(200, (handle{ path = "/metrics", client = "10.0.0.1", headers = { origin = "null" } }))
      assert.equal(405, (handle{ method = "POST", path = "/metrics", client = "10.0.0.1" }))
    end)
  end)
end)

-- aigw.engine.config: normalising a config table, and loading a config file.

local config = require "aigw.engine.config"

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function write(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

describe("aigw.engine.config", function()
  describe("normalise", function()
    it("fills in every default", function()
      local c = config.normalise("f.lua", {})
      assert.same({ "127.0.0.1:8080" }, c.listen)
      assert.is_nil(c.admin_listen)
      assert.equal(0, c.workers)
      assert.equal("info", c.log_level)
      assert.equal("text", c.log_format)
      assert.same({}, c.api_keys)
      assert.same({}, c.admin_keys)
      assert.equal(10 * 1024 * 1024, c.server.max_body_size)
      assert.equal(32 * 1024, c.server.max_header_size)
      assert.equal(10000, c.server.max_connections)
      assert.equal(75, c.server.keepalive_timeout)
      assert.same({}, c.shared)
      assert.same({ { name = "key-auth", config = {} } }, c.plugins)
      assert.same({ name = "mock", kind = "mock" }, c.providers.mock)
      assert.same({}, c.routes)
      assert.same({}, c.models)
    end)

    it("converts sizes, durations, key lists and plugin names", function()
      local c = config.normalise("f.lua", {
        listen = { "127.0.0.1:1", "[::1]:2" },
        admin_listen = "127.0.0.1:9090",
        workers = 3,
        api_keys = "k1, k2,k3",
        admin_keys = " a1,a2 ",
        server = { max_body_size = "1m", client_body_timeout = "500ms", drain_timeout = "2m" },
        shared = { limits = "8m", small = 4096 },
        plugins = { "key-auth", { name = "other", config = { a = 1 } } },
      })
      assert.same({ "127.0.0.1:1", "[::1]:2" }, c.listen)
      assert.equal("127.0.0.1:9090", c.admin_listen)
      assert.equal(3, c.workers)
      assert.same({ "k1", "k2", "k3" }, c.api_keys)
      assert.same({ "a1", "a2" }, c.admin_keys)
      assert.equal(1024 * 1024, c.server.max_body_size)
      assert.equal(0.5, c.server.client_body_timeout)
      assert.equal(120, c.server.drain_timeout)
      assert.same({ limits = 8 * 1024 * 1024, small = 4096 }, c.shared)
      assert.same({ { name = "key-auth", config = {} }, { name = "other", config = { a = 1 } } }, c.plugins)
    end)

    it("fills in a provider's defaults", function()
      local c = config.normalise("f.lua", {
        providers = { up = { kind = "openai-compatible", base_url = "http://127.0.0.1:1/v1", api_key = "" } },
      })
      local p = c.providers.up
      assert.equal("openai-compatible", p.kind)
      assert.is_nil(p.api_key)          -- an empty key is no key
      assert.is_true(p.tls_verify)
      assert.same({ connect = 10, read = 300, total = 600 }, p.timeouts)
      assert.same({ max_idle = 64, idle_timeout = 60 }, p.keepalive)
    end)

    it("normalises routes", function()
      local c = config.normalise("f.lua", {
        providers = { up = { kind = "openai", base_url = "http://h/v1" } },
        routes = { { path = "/embed", provider = "up", endpoint = "embeddings", method = "post" } },
      })
      assert.same({ { path = "/embed", provider = "up", endpoint = "embeddings", method = "POST" } }, c.routes)
    end)

    -- Each bad value gives one line naming the file and the field.
    local cases = {
      { { bogus = 1 }, 'f.lua: bogus: expected a known field' },
      { { listen = "nope" }, 'f.lua: listen: expected an IP address and port' },
      { { listen = "127.0.0.1:70000" }, 'f.lua: listen: expected a port up to 65535' },
      { { admin_listen = 8080 }, 'f.lua: admin_listen: expected an IP address and port' },
      { { listen = "127.0.0.1:8080", admin_listen = "127.0.0.1:8080" }, 'f.lua: admin_listen: expected a port of its own (listen takes 127.0.0.1:8080), got "127.0.0.1:8080"' },
      { { listen = "0.0.0.0:8080", admin_listen = "127.0.0.1:8080" }, 'f.lua: admin_listen: expected a port of its own (listen takes 0.0.0.0:8080)' },
      { { listen = "127.0.0.1:8080", admin_listen = "localhost:8080" }, 'f.lua: admin_listen: expected a port of its own' },
      { { listen = "[::1]:8080", admin_listen = "[::]:8080" }, 'f.lua: admin_listen: expected a port of its own' },
      { { listen = { "127.0.0.1:8080", "*:8080" } }, 'f.lua: listen[2]: expected an address with a port no other listen address takes, got "*:8080"' },
      { { workers = 0 }, 'f.lua: workers: expected "auto" or a whole number from 1 to 256, got 0' },
      { { log_level = "loud" }, 'f.lua: log_level: expected debug, info, warn or error, got "loud"' },
      { { log_format = "xml" }, 'f.lua: log_format: expected text or json, got "xml"' },
      { { log_format = true }, 'f.lua: log_format: expected text or json, got true' },
      { { api_keys = { "ok", "" } }, 'f.lua: api_keys[2]: expected a non-empty string, got ""' },
      { { admin_keys = 7 }, 'f.lua: admin_keys: expected a list of keys or one string of them, got 7' },
      { { admin_keys = { "ok", "" } }, 'f.lua: admin_keys[2]: expected a key of visible ASCII characters, got an empty string' },
      { { admin_keys = { "ok", 1 } }, 'f.lua: admin_keys[2]: expected a key of visible ASCII characters, got 1' },
      { { admin_keys = { "with space" } }, 'f.lua: admin_keys[1]: expected a key of visible ASCII characters, got a string with other bytes' },
      { { admin_keys = { "nl\r\nX: y" } }, 'f.lua: admin_keys[1]: expected a key of visible ASCII characters, got a string with other bytes' },
      { { api_keys = { "a", "same" }, admin_keys = { "x", "same" } }, 'f.lua: admin_keys[2]: expected a key that is not also a gateway key, got api_keys[2]' },
      { { server = { bogus = 1 } }, 'f.lua: server.bogus: expected a known field' },
      { { server = { max_body_size = "10x" } }, 'f.lua: server.max_body_size: expected a size like "10m", got "10x"' },
      { { server = { max_header_size = "512" } }, 'f.lua: server.max_header_size: expected a size from 1k to 1m, got "512"' },
      { { server = { max_header_size = "2m" } }, 'f.lua: server.max_header_size: expected a size from 1k to 1m, got "2m"' },
      { { server = { max_body_size = "2g" } }, 'f.lua: server.max_body_size: expected a size up to 1g, got "2g"' },
      { { server = { max_body_size = "1g" } }, 'f.lua: server.max_buffered_bodies: expected at least max_body_size (1073741824), got 536870912' },
      { { server = { client_body_total_timeout = "later" } }, 'f.lua: server.client_body_total_timeout: expected a duration in seconds, got "later"' },
      { { server = { max_connections = 0 } }, 'f.lua: server.max_connections: expected a whole number from 1 to 10000000, got 0' },
      { { server = { max_connections = 1e300 } }, 'f.lua: server.max_connections: expected a whole number from 1 to 10000000, got 1e+300' },
      { { server = { keepalive_timeout = 1e300 } }, 'f.lua: server.keepalive_timeout: expected a duration in seconds, got 1e+300' },
      { { server = { max_body_size = 1e400 } }, 'f.lua: server.max_body_size: expected a size like "10m", got inf' },
      { { shared = { limits = "9999999g" } }, 'f.lua: shared.limits: expected a size of at least 4k' },
      { { listen = "016.0.0.1:8080" }, 'f.lua: listen: expected an IP address and port' },
      { { listen = "999.1.1.1:80" }, 'f.lua: listen: expected an IP address and port' },
      { { server = { send_timeout = "soon" } }, 'f.lua: server.send_timeout: expected a duration in seconds, got "soon"' },
      { { shared = { limits = "1k" } }, 'f.lua: shared.limits: expected a size of at least 4k' },
      { { shared = { ["bad name"] = "8m" } }, 'f.lua: shared: expected zone names that are Lua identifiers' },
      { { plugins = { 42 } }, 'f.lua: plugins[1]: expected a plugin name or { name = ..., config = { ... } }' },
      { { plugins = { "ok", "../evil" } }, 'f.lua: plugins[2]: expected a plugin name, got "../evil"' },
      { { plugins = { { name = "p", config = "x" } } }, 'f.lua: plugins[1].config: expected a table' },
      { { providers = { up = { kind = "magic" } } }, 'f.lua: providers.up.kind: expected one of openai, openai-compatible, azure-openai, anthropic, gemini, mock, got "magic"' },
      { { providers = { up = { kind = "openai" } } }, 'f.lua: providers.up.base_url: expected an http:// or https:// URL, got nil' },
      { { providers = { up = { kind = "openai", base_url = "http://h", api_key = 1 } } }, 'f.lua: providers.up.api_key: expected a string' },
      { { providers = { up = { kind = "openai", base_url = "http://h", tls_verify = "no" } } }, 'f.lua: providers.up.tls_verify: expected true or false' },
      { { providers = { up = { kind = "openai", base_url = "http://h", timeouts = { read = "x" } } } }, 'f.lua: providers.up.timeouts.read: expected a duration in seconds' },
      { { providers = { up = { kind = "openai", base_url = "http://h", timeouts = { idle = 1 } } } }, 'f.lua: providers.up.timeouts.idle: expected connect, read or total' },
      { { providers = { up = { kind = "openai", base_url = "http://h", keepalive = { max_idle = -1 } } } }, 'f.lua: providers.up.keepalive.max_idle: expected a number >= 0' },
      { { providers = { up = { kind = "openai", base_url = "http://h", headers = { a = 1 } } } }, 'f.lua: providers.up.headers: expected a table of strings' },
      { { providers = { up = { kind = "openai", base_url = "http://h", extra = 1 } } }, 'f.lua: providers.up.extra: expected one of kind, base_url' },
      { { routes = { { path = "nope" } } }, 'f.lua: routes[1].path: expected a path starting with /' },
      { { routes = { { path = "/x", provider = "ghost" } } }, 'f.lua: routes[1].provider: expected the name of a configured provider, got "ghost"' },
      { { routes = { { path = "/x", method = "P O" } } }, 'f.lua: routes[1].method: expected an HTTP method' },
      { { routes = { { path = "/x", adapter = "../etc" } } }, 'f.lua: routes[1].adapter: expected the name of a route adapter (adapters/<name>.lua, or a Lua module), got "../etc"' },
      { { routes = { { path = "/x", adapter = "my.adapter." } } }, 'f.lua: routes[1].adapter: expected the name of a route adapter' },
      { { server = { plugin_jit = "yes" } }, 'f.lua: server.plugin_jit: expected true or false' },
      { { server = { lua_time_limit = "soon" } }, 'f.lua: server.lua_time_limit: expected a duration in seconds' },
      { { pid_file = 3 }, 'f.lua: pid_file: expected a file path' },
      { { watch = "yes" }, 'f.lua: watch: expected true or false' },
      { { api_prefix = "api" }, 'f.lua: api_prefix: expected a path prefix like "/api" (no trailing slash)' },
      { { api_prefix = "/api/" }, 'f.lua: api_prefix: expected a path prefix like "/api" (no trailing slash)' },
      { { api_prefix = "/a//b" }, 'f.lua: api_prefix: expected a path prefix like "/api" (no trailing slash)' },
    }
    for _, case in ipairs(cases) do
      it("names the field: " .. case[2]:match("^f%.lua: ([^:]+)"), function()
        local err = errmsg(config.normalise, "f.lua", case[1])
        assert.equal(case[2], err:sub(1, #case[2]))
      end)
    end

    it("never shows an admin key in its errors", function()
      for _, keys in ipairs({ { "secret key" }, { "secret\tkey" } }) do
        local err = errmsg(config.normalise, "f.lua", { admin_keys = keys })
        assert.matches("admin_keys[1]", err, 1, true)
        assert.not_matches("secret", err, 1, true)
      end
      local err = errmsg(config.normalise, "f.lua", { api_keys = { "secret" }, admin_keys = { "secret" } })
      assert.matches("admin_keys[1]", err, 1, true)
      assert.not_matches("secret", err, 1, true)
    end)

    it("accepts an api_prefix", function()
      assert.equal("/api/v2", config.normalise("f.lua", { api_prefix = "/api/v2" }).api_prefix)
    end)

    it("rejects a config that is not a table", function()
      assert.equal("f.lua: the config must return a table, got string",
                   errmsg(config.normalise, "f.lua", "x"))
    end)
  end)

  describe("parse_size and parse_duration", function()
    it("parses sizes", function()
      assert.equal(1024, config.parse_size("1k"))
      assert.equal(1024, config.parse_size("1KB"))
      assert.equal(3 * 1024 ^ 3, config.parse_size("3g"))
      assert.equal(1536, config.parse_size("1.5k"))
      assert.equal(100, config.parse_size(100))
      assert.is_nil(config.parse_size(1.5))
      assert.is_nil(config.parse_size(-1))
      assert.is_nil(config.parse_size("1q"))
      assert.is_nil(config.parse_size({}))
    end)

    it("parses durations", function()
      assert.equal(10, config.parse_duration(10))
      assert.equal(10, config.parse_duration("10s"))
      assert.equal(0.25, config.parse_duration("250ms"))
      assert.equal(120, config.parse_duration("2m"))
      assert.equal(7200, config.parse_duration("2h"))
      assert.is_nil(config.parse_duration(-1))
      assert.is_nil(config.parse_duration("2d"))
    end)
  end)

  describe("load", function()
    local paths = {}
    after_each(function()
      for _, p in ipairs(paths) do os.remove(p) end
      paths = {}
    end)
    local function file(text)
      local p = write(text)
      paths[#paths + 1] = p
      return p
    end

    it("loads and normalises a file", function()
      local c = config.load(file('return { listen = "127.0.0.1:18080", log_level = "warn", log_format = "json" }'))
      assert.same({ "127.0.0.1:18080" }, c.listen)
      assert.equal("warn", c.log_level)
      assert.equal("json", c.log_format)
    end)

    it("names a missing file", function()
      local err = errmsg(config.load, "/nonexistent/gw.lua")
      assert.equal("/nonexistent/gw.lua: cannot open the file (No such file or directory)", err)
    end)

    it("names the file and line of a syntax error", function()
      local p = file("return {\n  listen = ,\n}\n")
      local err = errmsg(config.load, p)
      assert.equal(p .. ":2:", err:sub(1, #p + 3))
    end)

    it("names the file and line of a run-time error", function()
      local p = file("local x = nil\nreturn { listen = x.y }\n")
      local err = errmsg(config.load, p)
      assert.equal(p .. ":2:", err:sub(1, #p + 3))
    end)

    it("names the file and field of a bad value", function()
      local p = file('return { workers = "many" }')
      assert.equal(p .. ': workers: expected "auto" or a whole number from 1 to 256, got "many"',
                   errmsg(config.load, p))
    end)

    it("loads the default gateway config", function()
      local c = config.load(aigw_core.prefix .. "/conf/gateway.lua")
      assert.is_table(c.providers.openai)
      assert.is_table(c.providers.mock)
    end)
  end)
end)

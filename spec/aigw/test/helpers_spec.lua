-- aigw.test.helpers: the helpers every spec leans on.

local h = require "aigw.test.helpers"
local aigw = require "aigw"
local cjson = require "cjson"

describe("aigw.test.helpers", function()
  describe("with_request", function()
    it("returns what the function returns", function()
      assert.same({ 1, nil, 3 }, { h.with_request(h.request(), function(a, b, c) return a, b, c end, 1, nil, 3) })
    end)

    it("raises the function's error", function()
      assert.has_error(function() h.with_request(h.request(), error, "boom", 0) end, "boom")
    end)

    it("lets the function wait on the loop", function()
      local req = h.request{ path = "/waited" }
      local t0 = aigw.monotonic()
      local path = h.with_request(req, function()
        aigw.sleep(0.02)
        return aigw.request.get_path()
      end)
      assert.equal("/waited", path)
      assert.is_true(aigw.monotonic() - t0 >= 0.015)
    end)

    it("lets the spec body itself wait", function()
      local t0 = aigw.monotonic()
      aigw.sleep(0.01)
      assert.is_true(aigw.monotonic() - t0 >= 0.008)
    end)

    it("gives aigw.exit's answer", function()
      local status, body, lines = h.with_request(h.request(), function()
        aigw.exit(418 + 2, { teapot = false }, { ["X-A"] = "1" })
      end)
      assert.equal(420, status)
      assert.same({ teapot = false }, cjson.decode(body))
      assert.equal("Content-Type: application/json\r\nX-A: 1\r\n", lines)
    end)

    it("runs without a request", function()
      assert.has_error(function() h.with_request(nil, function() return aigw.request.id() end) end,
                       "no request in this context")
    end)
  end)

  describe("run", function()
    local calls
    local function plugin()
      calls = {}
      return {
        name = "probe", priority = 100,
        schema = { answer = { type = "number" }, greeting = { type = "string", default = "hi" } },
        init = function(conf) calls[#calls + 1] = "init"; conf.ready = true end,
        init_worker = function() calls[#calls + 1] = "init_worker" end,
        access = function(conf, ctx)
          calls[#calls + 1] = "access"
          ctx.seen = aigw.request.get_path()
          if conf.answer then return conf.answer, { msg = conf.greeting }, { ["X-Probe"] = "1" } end
        end,
        upstream = function(_, ctx)
          calls[#calls + 1] = "upstream"
          ctx.upstream.headers["x-extra"] = "yes"
        end,
        header_filter = function()
          calls[#calls + 1] = "header_filter"
          aigw.response.set_header("X-Filtered", "1")
          aigw.response.filter_body()
        end,
        body_filter = function(_, _, chunk, eof)
          calls[#calls + 1] = "body_filter"
          return chunk:upper() .. (eof and "!" or "")
        end,
        log = function(_, ctx)
          calls[#calls + 1] = "log"
          ctx.logged = ctx.status
        end,
      }
    end

    it("runs every phase in the runtime's order", function()
      local status, body, headers, ctx = h.run(plugin(), {}, h.request{ path = "/p" }, {
        response = { status = 201, headers = { ["Content-Type"] = "text/plain" }, body = { "ab", "cd" } },
      })
      assert.same({ "init", "init_worker", "access", "upstream", "header_filter", "body_filter",
                    "body_filter", "log" }, calls)
      assert.equal(201, status)
      assert.equal("ABCD!", body)
      assert.equal("Content-Type: text/plain\r\nX-Filtered: 1\r\n", headers)
      assert.equal("/p", ctx.seen)
      assert.equal("yes", ctx.upstream.headers["x-extra"])
      assert.equal(201, ctx.logged)
      assert.is_table(ctx.config)
    end)

    it("stops at an early answer, which still goes through the filters and log", function()
      local status, body, headers, ctx = h.run(plugin(), { answer = 403 })
      assert.same({ "init", "init_worker", "access", "header_filter", "body_filter", "log" }, calls)
      assert.equal(403, status)
      assert.equal('{"MSG":"HI"}!', body)
      assert.equal("Content-Type: application/json\r\nX-Probe: 1\r\nX-Filtered: 1\r\n", headers)
      assert.equal(403, ctx.logged)
    end)

    it("runs only the phases asked for", function()
      local status, _, _, ctx = h.run(plugin(), { answer = 429 }, nil, { phases = { "access" } })
      assert.same({ "init", "init_worker", "access" }, calls)
      assert.equal(429, status)
      assert.is_nil(ctx.logged)
      assert.has_error(function() h.run({ priority = 1 }, {}, nil, { phases = { "access" } }) end,
                       "plugin spec-plugin has no access phase")
    end)

    it("gives nils when nothing answers", function()
      local status, body, headers, ctx = h.run(plugin(), {}, nil, { phases = { "access", "log" } })
      assert.is_nil(status)
      assert.is_nil(body)
      assert.is_nil(headers)
      assert.equal(200, ctx.logged)
    end)

    it("checks the config against the schema and leaves the caller's table alone", function()
      local conf = { answer = 200 }
      local _, body = h.run(plugin(), conf, nil, { phases = { "access" } })
      assert.same({ answer = 200 }, conf)
      assert.equal('{"msg":"hi"}', body)
      assert.has_error(function() h.run(plugin(), { answer = "x" }) end,
                       "plugin probe: config field 'answer': expected number, got string")
      assert.has_error(function() h.run(plugin(), { nope = 1 }) end,
                       "plugin probe: config field 'nope' is not known")
    end)

    it("raises a phase's error", function()
      local p = { priority = 1, access = function() error("access broke", 0) end }
      assert.has_error(function() h.run(p) end, "access broke")
      p = { priority = 1, log = function() error("log broke", 0) end }
      assert.has_error(function() h.run(p) end, "log broke")
    end)

    it("takes aigw.exit from access", function()
      local p = { priority = 1, access = function() aigw.exit(451, "gone", "X-Why: law\r\n") end }
      local status, body, headers = h.run(p)
      assert.equal(451, status)
      assert.equal("gone", body)
      assert.equal("X-Why: law\r\n", headers)
    end)

    it("lets access wait", function()
      local p = { priority = 1, access = function(_, ctx) aigw.sleep(0.001); ctx.waited = true end }
      local _, _, _, ctx = h.run(p)
      assert.is_true(ctx.waited)
    end)

    it("does not let log wait", function()
      local p = { priority = 1, log = function() aigw.sleep(0.001) end }
      assert.has_error(function() h.run(p) end)
    end)
  end)

  describe("config", function()
    it("normalises a config table", function()
      local c = h.config({ api_keys = "a,b" })
      assert.same({ "a", "b" }, c.api_keys)
      assert.equal(10000, c.server.max_connections)
    end)
  end)

  describe("capture_log", function()
    it("returns the log text and the function's results", function()
      local text, a, b = h.capture_log(function(x) aigw.log.error("captured ", x); return x, 2 end, 1)
      assert.matches("error %[w1%] captured 1\n$", text)
      assert.same({ 1, 2 }, { a, b })
    end)
  end)

  describe("mock_upstream", function()
    it("starts a mock on a free port and stops it", function()
      local url, stop = h.mock_upstream("json")
      assert.matches("^http://127%.0%.0%.1:%d+$", url)
      stop()
      stop()   -- twice is harmless
    end)

    it("starts several at once on different ports", function()
      local u1, s1 = h.mock_upstream()
      local u2, s2 = h.mock_upstream("stream")
      assert.not_equal(u1, u2)
      s1()
      s2()
    end)

    it("rejects a handler that is not a behaviour", function()
      assert.has_error(function() h.mock_upstream(function() end) end)
    end)
  end)
end)

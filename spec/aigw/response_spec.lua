-- aigw.response and aigw.exit, driven through h.run with inline plugins.

local h = require "aigw.test.helpers"
local aigw = require "aigw"
local response = require "aigw.response"
local cjson = require "cjson"

-- The header lines of a string as a set, for heads built with pairs().
local function line_set(lines)
  local set, n = {}, 0
  for line in lines:gmatch("([^\r\n]*)\r\n") do
    set[line] = true
    n = n + 1
  end
  return set, n
end

-- An upstream answer for the filter phases.
local function upstream(headers)
  return { response = { status = 200, headers = headers or { ["Content-Type"] = "text/plain" }, body = "up" } }
end

-- The error a plugin's access phase raises when it calls fn(...).
local function access_error(fn, ...)
  local args, n = { ... }, select("#", ...)
  local ok, err = pcall(h.run, { priority = 1, access = function() fn(unpack(args, 1, n)) end })
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("aigw.exit", function()
  describe("from access", function()
    it("answers with a table body as JSON and the header table as lines", function()
      local p = { priority = 1, access = function(_, ctx)
        aigw.exit(403, { error = { code = "denied" }, n = 2 }, { ["X-Reason"] = "policy", ["Retry-After"] = 3 })
        ctx.after = true
      end, log = function(_, ctx) ctx.logged = ctx.status end }
      local status, body, headers, ctx = h.run(p)
      assert.equal(403, status)
      assert.same({ error = { code = "denied" }, n = 2 }, cjson.decode(body))
      -- Content-Type comes first; the table's own headers follow in any order
      assert.equal("Content-Type: application/json\r\n", headers:sub(1, 32))
      local set, n = line_set(headers)
      assert.equal(3, n)
      assert.is_true(set["X-Reason: policy"])
      assert.is_true(set["Retry-After: 3"])
      assert.is_nil(ctx.after)
      assert.equal(403, ctx.logged)        -- log saw the exit's status
    end)

    it("takes a string body and header lines as they are", function()
      local p = { priority = 1, access = function()
        aigw.exit(200, "plain text", "Content-Type: text/plain\r\nX-A: 1\r\n")
      end }
      local status, body, headers = h.run(p)
      assert.equal(200, status)
      assert.equal("plain text", body)
      assert.equal("Content-Type: text/plain\r\nX-A: 1\r\n", headers)
    end)

    it("sends an empty body and no headers for nil", function()
      local status, body, headers = h.run({ priority = 1, access = function() aigw.exit(204) end })
      assert.equal(204, status)
      assert.equal("", body)
      assert.equal("", headers)
    end)

    it("accepts the edges of the status range", function()
      assert.equal(200, (h.run({ priority = 1, access = function() aigw.exit(200) end })))
      assert.equal(599, (h.run({ priority = 1, access = function() aigw.exit(599) end })))
    end)

    it("cannot be swallowed by the plugin's own pcall", function()
      local p = { priority = 1, access = function(_, ctx)
        local ok = pcall(aigw.exit, 401, "pcall")
        ctx.after_pcall = { ok }
        aigw.exit(500, "after pcall")
      end }
      local status, body, _, ctx = h.run(p)
      assert.equal(401, status)
      assert.equal("pcall", body)
      assert.is_nil(ctx.after_pcall)
    end)

    it("cannot be swallowed by pcall around a function, or by xpcall", function()
      local p = { priority = 1, access = function(_, ctx)
        pcall(function() aigw.exit(429, "inner") end)
        ctx.after = true
      end }
      local status, body, _, ctx = h.run(p)
      assert.equal(429, status)
      assert.equal("inner", body)
      assert.is_nil(ctx.after)

      local handled = false
      p = { priority = 1, access = function(_, pctx)
        xpcall(function() aigw.exit(418, "x") end, function() handled = true end)
        pctx.after = true
      end }
      status, _, _, ctx = h.run(p)
      assert.equal(418, status)
      assert.is_false(handled)
      assert.is_nil(ctx.after)
    end)

    it("answers from upstream too, skipping the rest of the phase", function()
      local p = { priority = 1, upstream = function(_, ctx)
        aigw.exit(502, { upstream = ctx.upstream.path })
        ctx.after = true
      end }
      local status, body, _, ctx = h.run(p, {}, nil, { upstream = { path = "/chat/completions" } })
      assert.equal(502, status)
      assert.same({ upstream = "/chat/completions" }, cjson.decode(body))
      assert.is_nil(ctx.after)
    end)
  end)

  describe("argument errors", function()
    it("rejects a status outside 200-599 or not a whole number", function()
      for _, s in ipairs({ 199, 600, 100, 0, -200, 200.5 }) do
        assert.matches("bad argument #1 to 'exit' (a status from 200 to 599 expected)",
                       access_error(aigw.exit, s), 1, true)
      end
      assert.matches("bad argument #1 to 'exit' (a status from 200 to 599 expected)",
                     access_error(aigw.exit, "200"), 1, true)
      assert.matches("bad argument #1 to 'exit' (a status from 200 to 599 expected)",
                     access_error(aigw.exit), 1, true)
    end)

    it("rejects a body that is not a string, table or nil", function()
      for _, b in ipairs({ 42, true, print }) do
        assert.matches("bad argument #2 to 'exit' (string or table expected)",
                       access_error(aigw.exit, 200, b), 1, true)
      end
    end)

    it("rejects CR, LF and NUL in a header table's values", function()
      for _, v in ipairs({ "a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b" }) do
        assert.matches("bad argument #3 to 'exit' (CR, LF or NUL in header X-A)",
                       access_error(aigw.exit, 200, "x", { ["X-A"] = v }), 1, true)
      end
    end)

    it("rejects header names that are not tokens", function()
      for _, name in ipairs({ "bad name", "X-A:", "X\r\nA", "" }) do
        assert.matches("bad argument #3 to 'exit' (bad header name", access_error(aigw.exit, 200, "x", { [name] = "v" }), 1, true)
      end
    end)

    it("names argument #3 and the caller when the header table is wrong", function()
      local err = access_error(aigw.exit, 200, "x", { ["X-A"] = "a\nb" })
      assert.matches("bad argument #3 to 'exit'", err, 1, true)
      assert.not_matches("response.lua", err, 1, true)
    end)

    it("rejects header lines without CRLF endings or with a blank line", function()
      assert.matches("bad argument #3 to 'exit' (header lines must each end in \\r\\n, with no other CR, LF or NUL)",
                     access_error(aigw.exit, 200, "x", "X-A: 1"), 1, true)
      assert.matches("bad argument #3 to 'exit' (header lines must each end in \\r\\n",
                     access_error(aigw.exit, 200, "x", "X-A: 1\r\n\r\nX-B: 2\r\n"), 1, true)
      -- a bare LF or CR, a NUL, a blank first line: each could end a line early
      for _, lines in ipairs({ "X-A: 1\nInjected: yes\r\n", "\nX-A: 1\r\n", "X-A: 1\rInjected: yes\r\n",
                               "X-A: 1\0\r\n", "\r\nX-A: 1\r\n" }) do
        assert.matches("bad argument #3 to 'exit' (header lines must each end in \\r\\n",
                       access_error(aigw.exit, 200, "x", lines), 1, true)
      end
    end)

    it("rejects headers that are neither a table nor a string", function()
      assert.matches("bad argument #3 to 'exit' (table or string expected)",
                     access_error(aigw.exit, 200, "x", 5), 1, true)
    end)

    it("raises outside a request", function()
      assert.has_error(function() aigw.exit(200) end, "aigw.exit: there is no request here")
    end)
  end)
end)

describe("aigw.response", function()
  describe("in header_filter", function()
    it("reads the status and headers, names case-insensitively", function()
      local seen
      local p = { priority = 1, header_filter = function()
        seen = {
          status = response.get_status(),
          lower = response.get_header("content-type"),
          upper = response.get_header("CONTENT-TYPE"),
          dup = response.get_header("x-dup"),
          missing = response.get_header("x-missing"),
          all = response.get_headers(),
        }
      end }
      local status, _, headers = h.run(p, {}, nil, upstream("Content-Type: text/plain\r\nX-Dup: 1\r\nx-dup: 2\r\n"))
      assert.same({
        status = 200, lower = "text/plain", upper = "text/plain", dup = "1",
        all = { { "Content-Type", "text/plain" }, { "X-Dup", "1" }, { "x-dup", "2" } },
      }, seen)
      -- nothing was changed: the head goes out as it came
      assert.equal(200, status)
      assert.equal("Content-Type: text/plain\r\nX-Dup: 1\r\nx-dup: 2\r\n", headers)
    end)

    it("gives a copy from get_headers", function()
      local again
      local p = { priority = 1, header_filter = function()
        local all = response.get_headers()
        all[1][2] = "changed"
        all[2] = { "X-Added", "1" }
        again = response.get_headers()
      end }
      local _, _, headers = h.run(p, {}, nil, upstream())
      assert.same({ { "Content-Type", "text/plain" } }, again)
      assert.equal("Content-Type: text/plain\r\n", headers)
    end)

    it("sets the status", function()
      local p = { priority = 1, header_filter = function(_, ctx)
        response.set_status(201)
        ctx.now = response.get_status()
      end, log = function(_, ctx) ctx.logged = ctx.status end }
      local status, body, _, ctx = h.run(p, {}, nil, upstream())
      assert.equal(201, status)
      assert.equal(201, ctx.now)
      assert.equal("up", body)
      assert.equal(201, ctx.logged)
    end)

    it("rejects a status outside 200-599", function()
      for _, s in ipairs({ 199, 600, 200.5, "200" }) do
        local p = { priority = 1, header_filter = function() response.set_status(s) end }
        local ok, err = pcall(h.run, p, {}, nil, upstream())
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'set_status' (a status from 200 to 599 expected)", err, 1, true)
      end
    end)

    it("replaces every header of a name with one, at the end", function()
      local p = { priority = 1, header_filter = function()
        response.set_header("x-dup", "3")
      end }
      local _, _, headers = h.run(p, {}, nil, upstream("X-Dup: 1\r\nContent-Type: text/plain\r\nx-dup: 2\r\n"))
      assert.equal("Content-Type: text/plain\r\nx-dup: 3\r\n", headers)
    end)

    it("removes every header of a name when set to nil", function()
      local p = { priority = 1, header_filter = function(_, ctx)
        response.set_header("X-DUP", nil)
        ctx.gone = response.get_header("x-dup")
      end }
      local _, _, headers, ctx = h.run(p, {}, nil, upstream("X-Dup: 1\r\nContent-Type: text/plain\r\nx-dup: 2\r\n"))
      assert.equal("Content-Type: text/plain\r\n", headers)
      assert.is_nil(ctx.gone)
    end)

    it("adds headers, keeping the ones there, and writes numbers as text", function()
      local p = { priority = 1, header_filter = function(_, ctx)
        response.add_header("Set-Cookie", "a=1")
        response.add_header("Set-Cookie", "b=2")
        response.set_header("X-Count", 5)
        ctx.first = response.get_header("set-cookie")
      end }
      local _, _, headers, ctx = h.run(p, {}, nil, upstream())
      assert.equal("Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Count: 5\r\n", headers)
      assert.equal("a=1", ctx.first)
    end)

    it("rejects bad header names and CR, LF or NUL in values", function()
      local calls = {
        { "get_header", "bad name", "bad argument #1 to 'get_header' (a header name expected)" },
        { "get_header", 42, "bad argument #1 to 'get_header' (a header name expected)" },
        { "set_header", "X:A", "bad argument #1 to 'set_header' (a header name expected)" },
        { "add_header", "", "bad argument #1 to 'add_header' (a header name expected)" },
      }
      for _, c in ipairs(calls) do
        local p = { priority = 1, header_filter = function() response[c[1]](c[2], "v") end }
        local ok, err = pcall(h.run, p, {}, nil, upstream())
        assert.is_false(ok)
        assert.matches(c[3], err, 1, true)
      end
      for _, fn in ipairs({ "set_header", "add_header" }) do
        for _, v in ipairs({ "a\r\nX-Evil: 1", "a\nb", "a\0b" }) do
          local p = { priority = 1, header_filter = function() response[fn]("X-A", v) end }
          local ok, err = pcall(h.run, p, {}, nil, upstream())
          assert.is_false(ok)
          assert.matches("bad argument #2 to '" .. fn .. "' (CR, LF or NUL in value)", err, 1, true)
        end
      end
    end)

    it("runs on an early answer from access as well", function()
      local p = {
        priority = 1,
        access = function() return 403, { error = "no" }, { ["X-A"] = "1" } end,
        header_filter = function(_, ctx)
          ctx.saw = { response.get_status(), response.get_header("content-type"), response.get_header("x-a") }
          response.set_header("X-A", "2")
        end,
      }
      local status, body, headers, ctx = h.run(p)
      assert.equal(403, status)
      assert.same({ error = "no" }, cjson.decode(body))
      assert.same({ 403, "application/json", "1" }, ctx.saw)
      assert.equal("Content-Type: application/json\r\nX-A: 2\r\n", headers)
    end)
  end)

  describe("outside header_filter", function()
    local HEAD = { get_status = {}, set_status = { 200 }, get_header = { "x-a" }, get_headers = {},
                   set_header = { "X-A", "1" }, add_header = { "X-A", "1" } }

    local function check_raises(phase_error, fn)
      assert.matches("aigw.response." .. fn .. ": only in header_filter (the head is sent by then)",
                     phase_error, 1, true)
    end

    it("raises in access", function()
      for fn, args in pairs(HEAD) do
        local p = { priority = 1, access = function() response[fn](unpack(args)) end }
        local ok, err = pcall(h.run, p)
        assert.is_false(ok)
        check_raises(err, fn)
      end
    end)

    it("raises in body_filter and log", function()
      for fn, args in pairs(HEAD) do
        local p = { priority = 1, access = function() response.filter_body() end,
                    body_filter = function() response[fn](unpack(args)) end }
        local ok, err = pcall(h.run, p, {}, nil, upstream())
        assert.is_false(ok)
        check_raises(err, fn)
        p = { priority = 1, log = function() response[fn](unpack(args)) end }
        ok, err = pcall(h.run, p, {}, nil, upstream())
        assert.is_false(ok)
        check_raises(err, fn)
      end
    end)

    it("raises with no phase at all", function()
      for fn, args in pairs(HEAD) do
        local ok, err = pcall(response[fn], unpack(args))
        assert.is_false(ok)
        check_raises(err, fn)
      end
    end)
  end)

  describe("exit in the filter phases", function()
    it("replaces the response in header_filter", function()
      local p = { priority = 1, header_filter = function(_, ctx)
        response.set_header("X-Before", "1")
        aigw.exit(503, { error = "down" }, { ["Retry-After"] = "2" })
        ctx.after = true
      end, log = function(_, ctx) ctx.logged = ctx.status end }
      local status, body, headers, ctx = h.run(p, {}, nil, upstream())
      assert.equal(503, status)
      assert.same({ error = "down" }, cjson.decode(body))
      assert.equal("Content-Type: application/json\r\nRetry-After: 2\r\n", headers)
      assert.is_nil(ctx.after)
      assert.equal(503, ctx.logged)
    end)

    it("replaces the response in header_filter even under the plugin's pcall", function()
      local p = { priority = 1, header_filter = function()
        pcall(aigw.exit, 503, "down")
      end }
      local status, body, headers = h.run(p, {}, nil, upstream())
      assert.equal(503, status)
      assert.equal("down", body)
      assert.equal("", headers)
    end)

    it("is not caught by the plugin's pcall in header_filter", function()
      local p = { priority = 1, header_filter = function(_, ctx)
        pcall(aigw.exit, 503, "down")
        ctx.after = true
      end }
      local _, _, _, ctx = h.run(p, {}, nil, upstream())
      assert.is_nil(ctx.after)
    end)

    describe("after the head is sent", function()
      it("raises in body_filter", function()
        local p = { priority = 1, access = function() response.filter_body() end,
                    body_filter = function() aigw.exit(500, "late") end }
        local ok, err = pcall(h.run, p, {}, nil, upstream())
        assert.is_false(ok)
        assert.matches("aigw.exit: the response has already started (body_filter)", err, 1, true)
      end)

      it("raises in log", function()
        local p = { priority = 1, log = function() aigw.exit(500, "late") end }
        local ok, err = pcall(h.run, p, {}, nil, upstream())
        assert.is_false(ok)
        assert.matches("aigw.exit: the response has already started (log)", err, 1, true)
      end)
    end)

    it("leaves no phase behind when body_filter raises in h.run", function()
      local p = { priority = 1, access = function() response.filter_body() end,
                  body_filter = function() error("broken", 0) end }
      assert.has_error(function() h.run(p, {}, nil, upstream()) end, "broken")
      local status = h.run({ priority = 1, access = function() aigw.exit(401) end })
      assert.equal(401, status)
    end)
  end)

  describe("filter_body", function()
    it("returns false when no plugin has a body_filter", function()
      local p = { priority = 1,
                  access = function(_, ctx) ctx.a = response.filter_body() end,
                  header_filter = function(_, ctx) ctx.hf = response.filter_body() end }
      local _, _, _, ctx = h.run(p, {}, nil, upstream())
      assert.is_false(ctx.a)
      assert.is_false(ctx.hf)
    end)

    it("returns true when a plugin has a body_filter", function()
      local p = { priority = 1,
                  access = function(_, ctx) ctx.a = response.filter_body() end,
                  body_filter = function() end }
      local _, _, _, ctx = h.run(p, {}, nil, upstream())
      assert.is_true(ctx.a)
    end)

    it("raises in body_filter and log", function()
      local p = { priority = 1, access = function() response.filter_body() end,
                  body_filter = function() response.filter_body() end }
      local ok, err = pcall(h.run, p, {}, nil, upstream())
      assert.is_false(ok)
      assert.matches("aigw.response.filter_body: too late in body_filter", err, 1, true)
      p = { priority = 1, log = function() response.filter_body() end }
      ok, err = pcall(h.run, p, {}, nil, upstream())
      assert.is_false(ok)
      assert.matches("aigw.response.filter_body: too late in log", err, 1, true)
    end)

    it("raises without a request", function()
      assert.has_error(function() response.filter_body() end, "aigw.response.filter_body: no request here")
    end)
  end)
end)

-- aigw.engine.runtime: the phase chain a worker runs, built by runtime.init_worker
-- from a config and plugin files in a scratch prefix.

local h = require "aigw.test.helpers"
local runtime = require "aigw.engine.runtime"
local lfs = require "lfs"
local cjson = require "cjson"

-- A plugin that records each phase in ctx.trace as "name:phase", and does
-- more when a ctx field names it (ctx is the spec's, passed to the handler).
local TRACING = [[
local aigw = require "aigw"
local NAME = %q
local function trace(ctx, what)
  ctx.trace = ctx.trace or {}
  ctx.trace[#ctx.trace + 1] = NAME .. ":" .. what
end
return {
  priority = %d,
  schema = { tag = { type = "string", default = "t" } },
  init = function() table.insert(runtime_phases_trace, NAME .. ":init") end,
  init_worker = function() table.insert(runtime_phases_trace, NAME .. ":init_worker") end,
  access = function(conf, ctx)
    trace(ctx, "access")
    if ctx.answer_in == NAME then return 418, { by = NAME } end
  end,
  header_filter = function(conf, ctx)
    trace(ctx, "header_filter")
    if ctx.hf_exit == NAME then
      aigw.exit(503, "replaced by " .. NAME, { ["Retry-After"] = 1 })
    end
    if ctx.hf_set == NAME then
      aigw.response.set_header("x-by", NAME)
      aigw.response.set_status(201)
    end
    if ctx.hf_error == NAME then error("header trouble", 0) end
  end,
  body_filter = function(conf, ctx, chunk, eof)
    trace(ctx, "body_filter")
    if ctx.bf_keep ~= NAME then return chunk .. "[" .. NAME .. (eof and "$" or "") .. "]" end
  end,
  log = function(conf, ctx)
    trace(ctx, "log:" .. ctx.status)
    if ctx.log_error == NAME then error("log trouble", 0) end
  end,
}
]]

-- Two upstream plugins: the first sees ctx.upstream as the runtime made it
-- and changes it as ctx asks; the second runs after it and sees the change.
local REWRITE = [==[
local aigw = require "aigw"
return {
  priority = 50,
  upstream = function(conf, ctx)
    local up = ctx.upstream
    ctx.trace[#ctx.trace + 1] = "rewrite:upstream"
    local names = {}
    for k in pairs(up.headers) do names[#names + 1] = k end
    ctx.seen = { provider = up.provider, path = up.path, body = up.body, target = up.target,
                 url = up.url, header_names = names }
    if ctx.up_exit then
      aigw.exit(402, { error = "payment required" }, { ["X-Why"] = "quota" })
    end
    if ctx.up_return then return 451, "unavailable", { ["X-Why"] = "law" } end
    if ctx.up_url then up.url = ctx.up_url end
    if ctx.up_header then up.headers[ctx.up_header[1]] = ctx.up_header[2] end
    if ctx.up_rewrite then
      up.path = "/responses"
      up.body = '{"rewritten":true}'
      up.headers["X-Team"] = "search"
    end
  end,
}
]==]
local REWRITE_LATE = [[
return {
  priority = 40,
  upstream = function(conf, ctx)
    ctx.trace[#ctx.trace + 1] = "rewrite-late:upstream"
    ctx.upstream.headers["X-Saw-Path"] = ctx.upstream.path
  end,
}
]]

local prefix

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function plugin_file(name, src)
  write(prefix .. "/plugins/" .. name .. ".lua", src)
end

-- runtime.init_worker for a config file with this text, with plugins read
-- from the scratch prefix.
local function build(conf_text)
  local conf_path = prefix .. "/gateway.lua"
  write(conf_path, conf_text)
  _G.runtime_phases_trace = {}
  local saved = aigw_core.prefix
  aigw_core.prefix = prefix
  local ok, res = pcall(runtime.init_worker, conf_path, 1)
  aigw_core.prefix = saved
  if not ok then error(res, 0) end
  return res
end

local PROVIDERS = [[
  providers = { openai = { kind = "openai", base_url = "http://127.0.0.1:9/v1", api_key = "sk-up" } },
]]

local function chat(phases, ctx, model)
  local req = h.request{ method = "POST", path = "/v1/chat/completions",
                         body = cjson.encode({ model = model or "gpt-4o", messages = {} }) }
  return h.with_request(req, phases.handler, ctx)
end

-- Header lines as a set.
local function line_set(lines)
  local set = {}
  for line in (lines or ""):gmatch("([^\r\n]*)\r\n") do set[line] = true end
  return set
end

describe("the runtime's phases", function()
  setup(function()
    prefix = os.tmpname()
    os.remove(prefix)
    assert(lfs.mkdir(prefix))
    assert(lfs.mkdir(prefix .. "/plugins"))
    plugin_file("first", TRACING:format("first", 300))
    plugin_file("second", TRACING:format("second", 200))
    plugin_file("third", TRACING:format("third", 100))
    plugin_file("rewrite", REWRITE)
    plugin_file("rewrite-late", REWRITE_LATE)
    plugin_file("bad-worker", [[
      return { priority = 1, init_worker = function() error("no timers today", 0) end }
    ]])
    plugin_file("quiet", "return { priority = 1, access = function() end }")
  end)

  teardown(function()
    for f in lfs.dir(prefix .. "/plugins") do
      if f ~= "." and f ~= ".." then os.remove(prefix .. "/plugins/" .. f) end
    end
    os.remove(prefix .. "/gateway.lua")
    lfs.rmdir(prefix .. "/plugins")
    lfs.rmdir(prefix)
    _G.runtime_phases_trace = nil
  end)

  describe("with three tracing plugins and two upstream plugins", function()
    local phases
    setup(function()
      -- listed out of priority order, on purpose
      phases = build([[ return {
        plugins = { "third", "rewrite-late", "first", "rewrite", { name = "second", config = { tag = "x" } } },
      ]] .. PROVIDERS .. "}")
    end)

    it("calls init in config order, then init_worker in priority order", function()
      assert.same({ "third:init", "first:init", "second:init",
                    "first:init_worker", "second:init_worker", "third:init_worker" }, _G.runtime_phases_trace)
    end)

    it("runs access in priority order, then upstream in priority order", function()
      local ctx = {}
      local decision = chat(phases, ctx)
      assert.equal("proxy", decision)
      assert.same({ "first:access", "second:access", "third:access",
                    "rewrite:upstream", "rewrite-late:upstream" }, ctx.trace)
    end)

    it("stops at an access answer", function()
      local ctx = { answer_in = "second" }
      local status, body, headers = chat(phases, ctx)
      assert.equal(418, status)
      assert.same({ by = "second" }, cjson.decode(body))
      assert.equal("Content-Type: application/json\r\n", headers)
      assert.same({ "first:access", "second:access" }, ctx.trace)
    end)

    it("shows upstream plugins the request about to go out", function()
      local ctx = {}
      local _, target, path, body, lines = chat(phases, ctx)
      assert.equal("openai", ctx.seen.provider)
      assert.equal("/chat/completions", ctx.seen.path)
      assert.is_nil(ctx.seen.body)                   -- the client's bytes
      assert.is_nil(ctx.seen.url)
      assert.same({}, ctx.seen.header_names)
      assert.equal(target, ctx.seen.target)
      assert.equal("/chat/completions", path)
      assert.is_nil(body)
      -- the later plugin added a header: it is the only one
      assert.equal("X-Saw-Path: /chat/completions\r\n", lines)
    end)

    it("lets upstream plugins change the path, body and headers", function()
      local ctx = { up_rewrite = true }
      local decision, target, path, body, lines = chat(phases, ctx)
      assert.equal("proxy", decision)
      assert.equal(ctx.seen.target, target)
      assert.equal("/responses", path)
      assert.equal('{"rewritten":true}', body)
      assert.same({ ["X-Team: search"] = true, ["X-Saw-Path: /responses"] = true }, line_set(lines))
    end)

    it("sends the request to a URL an upstream plugin sets, one target per origin", function()
      local ctx = { up_url = "http://127.0.0.1:9/elsewhere/chat?x=1" }
      local decision, target, path = chat(phases, ctx)
      assert.equal("proxy", decision)
      assert.equal("userdata", type(target))
      assert.not_equal(ctx.seen.target, target)
      assert.equal("/elsewhere/chat?x=1", path)
      local _, again, path2 = chat(phases, { up_url = "http://127.0.0.1:9" })
      assert.equal(target, again)
      assert.equal("/", path2)
    end)

    it("rejects a URL that is not http(s) and headers with CR or LF", function()
      assert.has_error(function() chat(phases, { up_url = "ftp://127.0.0.1/x" }) end,
                       "ctx.upstream.url: expected an http:// or https:// URL, got ftp://127.0.0.1/x")
      assert.has_error(function() chat(phases, { up_header = { "X-Bad", "a\r\nb" } }) end,
                       "ctx.upstream.headers: header X-Bad has CR, LF or NUL")
      assert.has_error(function() chat(phases, { up_header = { "Bad Name", "v" } }) end,
                       "ctx.upstream.headers: bad header name Bad Name")
    end)

    it("lets an upstream plugin answer with aigw.exit, skipping the later ones", function()
      local ctx = { up_exit = true }
      local status, body, headers = chat(phases, ctx)
      assert.equal(402, status)
      assert.same({ error = "payment required" }, cjson.decode(body))
      assert.equal("Content-Type: application/json\r\nX-Why: quota\r\n", headers)
      assert.equal("rewrite:upstream", ctx.trace[#ctx.trace])
    end)

    it("lets an upstream plugin answer by returning status, body, headers", function()
      local ctx = { up_return = true }
      local status, body, headers = chat(phases, ctx)
      assert.equal(451, status)
      assert.equal("unavailable", body)
      assert.equal("X-Why: law\r\n", headers)
      assert.equal("rewrite:upstream", ctx.trace[#ctx.trace])
    end)

    it("does not run upstream plugins for the built-in mock", function()
      local ctx = {}
      local status = chat(phases, ctx, "echo")
      assert.equal(200, status)
      assert.same({ "first:access", "second:access", "third:access" }, ctx.trace)
      assert.is_nil(ctx.upstream)
    end)

    describe("header_filter", function()
      local HEAD = "Content-Type: application/json\r\nX-Up: 1\r\n"

      it("runs in priority order and passes an untouched head through", function()
        local ctx = {}
        local status, head = phases.header_filter(ctx, 200, HEAD)
        assert.equal(200, status)
        assert.equal(HEAD, head)
        assert.same({ "first:header_filter", "second:header_filter", "third:header_filter" }, ctx.trace)
      end)

      it("gives the new head after set_header and set_status", function()
        local ctx = { hf_set = "second" }
        local status, head = phases.header_filter(ctx, 200, HEAD)
        assert.equal(201, status)
        assert.equal(HEAD .. "x-by: second\r\n", head)
        assert.equal(head, ctx._engine.head)
        assert.equal(3, #ctx.trace)
      end)

      it("reports false after an exit, which stops the chain", function()
        local ctx = { hf_exit = "second" }
        assert.is_false(phases.header_filter(ctx, 200, HEAD))
        assert.same({ 503, "replaced by second", "Retry-After: 1\r\n" }, ctx._exit)
        assert.same({ "first:header_filter", "second:header_filter" }, ctx.trace)
      end)

      it("names the plugin whose header_filter raised, and leaves no head behind", function()
        local ctx = { hf_error = "first" }
        assert.has_error(function() phases.header_filter(ctx, 200, HEAD) end,
                         "plugin first header_filter: header trouble")
        assert.has_error(function() require("aigw.response").get_status() end)
      end)
    end)

    describe("body_filter", function()
      it("chains the plugins in priority order", function()
        local ctx = {}
        assert.equal("ab[first][second][third]", phases.body_filter(ctx, "ab", false, nil, true))
        assert.equal("[first$][second$][third$]", phases.body_filter(ctx, "", true, nil, true))
        assert.same({ "first:body_filter", "second:body_filter", "third:body_filter",
                      "first:body_filter", "second:body_filter", "third:body_filter" }, ctx.trace)
      end)

      it("keeps the chunk when a plugin returns nil", function()
        local ctx = { bf_keep = "second" }
        assert.equal("ab[first][third]", phases.body_filter(ctx, "ab", false, nil, true))
        ctx.bf_keep = "first"
        assert.equal("ab[second][third]", phases.body_filter(ctx, "ab", false, nil, true))
      end)
    end)

    describe("log", function()
      it("runs in priority order with ctx.status set", function()
        local ctx = {}
        phases.log(ctx, 404)
        assert.equal(404, ctx.status)
        assert.same({ "first:log:404", "second:log:404", "third:log:404" }, ctx.trace)
      end)

      it("logs an error and still runs the other log functions", function()
        local ctx = { log_error = "first" }
        local text = h.capture_log(phases.log, ctx, 200)
        assert.matches("error %[w1%] plugin first log: log trouble", text)
        assert.same({ "first:log:200", "second:log:200", "third:log:200" }, ctx.trace)
      end)
    end)
  end)

  it("asks for no plugin filtering or log phase when no plugin has them", function()
    local phases = build("return { plugins = { 'quiet' }, " .. PROVIDERS .. "}")
    assert.is_function(phases.handler)
    -- the runtime's own filters are there for the requests that ask
    assert.is_function(phases.header_filter)
    assert.is_function(phases.body_filter)
    assert.is_nil(phases.filter_all)
    assert.is_nil(phases.filter_errors)
    assert.is_nil(phases.log)
    assert.equal("ab", phases.body_filter({}, "ab", false, nil, true))
  end)

  it("runs plugin body filters only for requests where a plugin asked", function()
    local phases = build("return { plugins = { 'first', 'second', 'third' }, " .. PROVIDERS .. "}")
    assert.is_true(phases.filter_all)
    assert.equal("ab", phases.body_filter({}, "ab", false, nil, false))
  end)

  it("names the plugin whose init_worker raised", function()
    assert.has_error(function() build("return { plugins = { 'first', 'bad-worker' } }") end,
                     "plugin bad-worker: init_worker: no timers today")
  end)

  it("names the plugin, the field and what was expected in a schema error", function()
    assert.has_error(function()
      build("return { plugins = { 'third', { name = 'first', config = { tag = 5 } } } }")
    end, "plugin first: config field 'tag': expected string, got number")
    assert.has_error(function()
      build("return { plugins = { { name = 'second', config = { colour = 'red' } } } }")
    end, "plugin second: config field 'colour' is not known")
  end)
end)

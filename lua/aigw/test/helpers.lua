-- aigw.test.helpers -- what specs use to drive plugins and the aigw API
-- under `aigw test`:
--
--   local h = require "aigw.test.helpers"
--   local req = h.request{ method = "POST", path = "/v1/chat/completions",
--                          headers = { ["x-api-key"] = "k" }, body = "{}" }
--   local status, body, headers, ctx = h.run("key-auth", {}, req,
--                                            { global = { api_keys = { "k" } } })
--
-- h.request(opts)
--   A real C request (core/http/http_conn.h's aigw_req_t, built by core/lua/lua_test.c)
--   whose URL and headers are offsets into a request head, as the server's
--   parser leaves them, so aigw.request reads it exactly as it reads a
--   served request. opts (all optional):
--     method  "GET"          any method llhttp knows
--     path    "/"            without the query
--     query   nil            the text after '?'; nil: the URL has no '?'
--     headers {}             { name = value, ... } (sent sorted by name) and/or
--                            { {"Name", "value"}, ... } (sent in that order)
--     body    ""             the request body
--     client  "127.0.0.1"    the client's address: decides is_loopback()
--     admin   false          came in on the admin listener
--   The request id is the x-request-id header when it is valid, else new.
--
-- h.with_request(req, fn, ...)
--   Calls fn(...) for req and returns what fn returns; fn's errors are
--   raised again. fn runs as a request's access phase does: in a thread of
--   its own on the loop (an lthread) whose request is req, so it may wait
--   (aigw.sleep, aigw.http, aigw.redis) while the spec waits for it.
--   req may be nil (no request). An aigw.exit(...) inside fn ends it, and
--   with_request returns the exit's status, body, header lines.
--
-- h.run(plugin, conf, req?, opts?)
--   Loads a plugin the way the runtime does (lua/aigw/engine/plugins.lua: schema
--   checked, defaults filled in, init(conf, global) called, and
--   init_worker(conf)), then runs its phases for req (default h.request{})
--   as the runtime does:
--     access, upstream   in the request's lthread: they may wait, and may
--                        answer by returning status, body, headers or with
--                        aigw.exit; an answer skips the rest of these two
--     header_filter      on the answer (the early one, or opts.response),
--     body_filter        through aigw.response, on a thread that cannot
--     log                wait; log sees ctx.status
--   plugin is a name (plugins/<name>.lua) or a plugin table. conf is the
--   plugin's config (copied, never changed). opts:
--     global    {}      the gateway config as a config file returns it,
--                       normalised by aigw.engine.config (init's global_conf,
--                       ctx.config)
--     phases    every phase the plugin has, in the order above
--     ctx       {}      the ctx table to start from
--     upstream  {}      ctx.upstream for the upstream phase ({ path, body,
--                       headers = {} } by default)
--     response  nil     the upstream's answer when access lets the request
--                       through: { status = 200, headers = "lines" or
--                       { name = value }, body = "text" or { chunks } }
--   Returns status, body, headers, ctx: the answer as the client would get
--   it (an early answer, or opts.response after the filters; nils when
--   neither), headers as one string of lines. An error raised by a phase,
--   init or init_worker is raised again, so `assert.has_error` sees it.
--
-- h.load(plugin, conf?, global?)
--   Only the loading step of h.run: returns the plugin table and its
--   checked conf.
--
-- h.config(t?)
--   A config table normalised as aigw.engine.config does for a file (defaults in).
--
-- h.capture_log(fn, ...)
--   Calls fn(...) with the error log (stderr) sent to a buffer, and returns
--   the text logged meanwhile, then fn's results. The log level is the
--   config's (`aigw test --config`), as in a worker.
--
-- h.mock_upstream(behavior?)
--   Starts tests/integration/mock_upstream.py (python3) on 127.0.0.1 on a
--   free port and returns url ("http://127.0.0.1:PORT"; its OpenAI base is
--   url .. "/v1") and stop(). behavior is the mock's default behaviour
--   ("json", "stream", "status=429", ...: the list is at the top of
--   mock_upstream.py; a request may still pick its own with an
--   x-mock-behavior header), or a table { behavior = ..., cert = PEM,
--   key = PEM } to serve TLS.
--   Why a child process: the mock must answer while the spec's own thread
--   waits on the loop, and the integration suite's mock already speaks every
--   behaviour the gateway is tested against (keep-alive, chunking, SSE,
--   failures mid-stream). The helper does not sleep: it returns once the
--   mock has printed its address, which it does only after it listens.
--   A mock a spec forgets to stop is killed when `aigw test` exits (and
--   with it if it dies).

local core = require "aigw.test.core"
local config = require "aigw.engine.config"
local plugins = require "aigw.engine.plugins"
local response = require "aigw.response"
local cjson = require "cjson"

local aigw = require "aigw"
local M = {}

M.prefix = aigw_core.prefix

local unpack = unpack
local function pack(...) return { n = select("#", ...), ... } end

function M.request(opts)
  return core.request(opts or {})
end

-- The outcome of core.run / core.call: "ok", results | "exit", status,
-- body, lines | "error", err.
local function outcome(kind, ...)
  if kind == "error" then error((...), 0) end
  return ...
end

function M.with_request(req, fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #2 to 'with_request' (function expected, got " .. type(fn) .. ")", 2)
  end
  return outcome(core.run(req, fn, ...))
end

function M.config(t)
  return config.normalise("spec", t or {})
end

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

function M.load(plugin, conf, global)
  global = global or M.config()
  conf = copy(conf)
  if type(plugin) == "string" then
    local list = plugins.load(M.prefix, { { name = plugin, config = conf } }, global)
    return list[1].plugin, list[1].conf
  end
  if type(plugin) ~= "table" then
    error("bad argument #1 (plugin name or table expected, got " .. type(plugin) .. ")", 2)
  end
  plugin.name = plugin.name or "spec-plugin"
  if type(plugin.priority) ~= "number" then
    error("plugin " .. plugin.name .. ": priority must be a number", 0)
  end
  conf = plugins.check(plugin, conf)
  if plugin.init then plugin.init(conf, global) end
  return plugin, conf
end

local PHASES = { "access", "upstream", "header_filter", "body_filter", "log" }

local function header_lines(headers)
  if headers == nil then return "" end
  if type(headers) == "string" then return headers end
  local names = {}
  for name in pairs(headers) do names[#names + 1] = name end
  table.sort(names)
  local out = {}
  for i, name in ipairs(names) do out[i] = name .. ": " .. tostring(headers[name]) .. "\r\n" end
  return table.concat(out)
end

-- What access and upstream return to answer, as the runtime turns it into
-- a response: a table body is JSON.
local function answer(status, body, headers)
  headers = header_lines(headers)
  if type(body) == "table" then
    body = cjson.encode(body)
    headers = "Content-Type: application/json\r\n" .. headers
  end
  return status, body or "", headers
end

function M.run(plugin, conf, req, opts)
  opts = opts or {}
  local global = M.config(opts.global)
  local p, pconf = M.load(plugin, conf, global)
  if p.init_worker then p.init_worker(pconf) end
  req = req or M.request()
  core.body_filter(req, p.body_filter ~= nil)
  local ctx = opts.ctx or {}
  ctx.config = ctx.config or global
  local wanted = {}
  for _, name in ipairs(opts.phases or PHASES) do
    if opts.phases and not p[name] then
      error("plugin " .. p.name .. " has no " .. name .. " phase", 2)
    end
    wanted[name] = p[name] ~= nil
  end

  -- access, then upstream, in the request's lthread
  local status, body, headers
  local function chain()
    if wanted.access then
      local s, b, hd = p.access(pconf, ctx)
      if s then return "answer", s, b, hd end
    end
    if wanted.upstream then
      local up = opts.upstream or {}
      up.headers = up.headers or {}
      ctx.upstream = up
      local s, b, hd = p.upstream(pconf, ctx)
      if s then return "answer", s, b, hd end
    end
    return "pass"
  end
  local res = { core.run(req, chain) }
  if res[1] == "error" then error(res[2], 0) end
  if res[1] == "exit" then
    status, body, headers = res[2], res[3], res[4]
  elseif res[2] == "answer" then
    status, body, headers = answer(res[3], res[4], res[5])
  elseif opts.response then
    local r = opts.response
    status, body, headers = r.status or 200, r.body or "", header_lines(r.headers)
  end

  -- header_filter and body_filter on the answer, if there is one
  if status and wanted.header_filter then
    -- The phase state belongs to the thread that runs the phase.
    local resp
    local kind, err = core.call(req, function()
      resp = response._begin(ctx, "header_filter", status, headers)
      local ok, e = pcall(p.header_filter, pconf, ctx)
      response._finish()
      if not ok then error(e, 0) end
    end)
    if ctx._exit then
      status, body, headers = ctx._exit[1], ctx._exit[2], ctx._exit[3]
    elseif kind == "error" then
      error(err, 0)
    elseif resp.dirty then
      status, headers = resp.status, response._serialize(resp)
    end
  end
  -- body_filter runs, as in the gateway, only if a phase asked for it.
  if status and wanted.body_filter and core.body_filter(req) then
    local chunks = type(body) == "table" and body or { body }
    local out = {}
    for i, chunk in ipairs(chunks) do
      local _, res1 = outcome(core.call(req, function()
        response._begin(ctx, "body_filter")
        local ok, r1 = pcall(p.body_filter, pconf, ctx, chunk, i == #chunks)
        response._finish()
        if not ok then error(r1, 0) end
        return "ok", r1
      end))
      out[#out + 1] = res1 ~= nil and tostring(res1) or chunk
    end
    body = table.concat(out)
  elseif type(body) == "table" then
    body = table.concat(body)
  end

  if wanted.log then
    ctx.status = status or 200
    local kind, err = core.call(req, function()
      response._begin(ctx, "log")
      local ok, e = pcall(p.log, pconf, ctx)
      response._finish()
      if not ok then error(e, 0) end
    end)
    if kind == "error" then error(err, 0) end
  end
  return status, body, headers, ctx
end

-- A decoded JSON value made comparable with assert.same: empty arrays
-- become "[]", so that [] and {} (the same empty Lua table otherwise)
-- differ.
function M.json_shape(v)
  if type(v) ~= "table" then return v end
  if next(v) == nil and getmetatable(v) == require("aigw.json").array_mt then return "[]" end
  local out = {}
  for k, x in pairs(v) do out[k] = M.json_shape(x) end
  return out
end

-- Runs fn with the volatile parts of translated answers fixed: os.time()
-- is 1700000000 and Gemini tool-call ids are call_gem_1, call_gem_2...
-- (restored after, also when fn raises). Returns fn's results.
function M.pinned(fn)
  local gemini = require "aigw.engine.protocols.gemini"
  local time, make = os.time, gemini.new_tool_call_id
  local n = 0
  os.time = function(t) if t then return time(t) end return 1700000000 end
  gemini.new_tool_call_id = function() n = n + 1; return "call_gem_" .. n end
  local res = { pcall(fn) }
  os.time, gemini.new_tool_call_id = time, make
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

function M.capture_log(fn, ...)
  core.capture_start()
  local res = pack(pcall(fn, ...))
  local text = core.capture_stop()
  if not res[1] then error(res[2], 0) end
  return text, unpack(res, 2, res.n)
end

local function python()
  local f = io.open("/usr/bin/python3", "rb")
  if f then
    f:close()
    return "/usr/bin/python3"
  end
  return "python3"
end

function M.mock_upstream(behavior)
  local opts = type(behavior) == "table" and behavior or { behavior = behavior }
  local argv = { python(), "-u", M.prefix .. "/tests/integration/mock_upstream.py",
                 "--host", "127.0.0.1", "--port", "0",
                 "--behavior", opts.behavior or "json" }
  if type(opts.behavior) ~= "string" and opts.behavior ~= nil then
    error("bad argument #1 to 'mock_upstream' (a behaviour string expected, got " ..
          type(opts.behavior) .. ")", 2)
  end
  if opts.cert then
    argv[#argv + 1] = "--cert"
    argv[#argv + 1] = opts.cert
    argv[#argv + 1] = "--key"
    argv[#argv + 1] = opts.key or opts.cert
  end
  local pid, line = core.spawn(argv)
  if not pid then error("mock_upstream: " .. line, 2) end
  local url = line:match("listening on (%S+)")
  if not url then
    core.kill(pid)
    error("mock_upstream: unexpected first line: " .. line, 2)
  end
  local stopped = false
  local function stop()
    if stopped then return end
    stopped = true
    core.kill(pid)
  end
  return url, stop
end

-- A redis-server of its own for a spec: 127.0.0.1 on a free port, no
-- persistence; aigw.redis is pointed at it. Returns its URL and a stop
-- function, or nil and why (redis-server is not installed: specs make
-- themselves pending). opts.password sets requirepass.
function M.redis_server(opts)
  opts = opts or {}
  local f = io.open("/usr/bin/redis-server")
  if not f then return nil, "redis-server is not installed" end
  f:close()
  for _ = 1, 5 do
    local port = 20000 + math.floor(aigw.monotonic() * 1000003) % 40000
    local argv = { "/usr/bin/redis-server", "--port", tostring(port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--loglevel", "warning",
                   "--enable-debug-command", "local" }
    if opts.password then
      argv[#argv + 1] = "--requirepass"
      argv[#argv + 1] = opts.password
    end
    local pid = core.spawn(argv)
    if pid then
      local url = "redis://" .. (opts.password and (":" .. opts.password .. "@") or "") ..
                  "127.0.0.1:" .. port .. "/0"
      local redis = require "aigw.redis"
      redis._configure({ url = url, connect_timeout = 1, timeout = 1 })
      -- Ready when it answers; a port taken by someone else ends the child.
      for _ = 1, 100 do
        if redis.call("PING") == "PONG" then
          return url, function() core.kill(pid); redis._configure(nil) end
        end
        aigw.sleep(0.05)
      end
      core.kill(pid)
    end
  end
  return nil, "redis-server did not start"
end

return M

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
--   A real C request (core/http_conn.h's aigw_req_t, built by core/lua_test.c)
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
--   Calls fn(...) in a coroutine whose request is req (as a plugin phase
--   runs), and returns what fn returns; fn's errors are raised again.
--
-- h.run(plugin, conf, req?, opts?)
--   Loads a plugin the way the runtime does (lua/aigw/plugins.lua: schema
--   checked, defaults filled in, init(conf, global) called), then runs its
--   phases for req (default h.request{}) like the runtime: access, then log
--   with ctx.status set. plugin is a name (plugins/<name>.lua) or a plugin
--   table. conf is the plugin's config (copied, never changed). opts:
--     global  {}            the gateway config as a config file returns it,
--                           normalised by aigw.config (init's global_conf,
--                           ctx.config)
--     phases  every phase the plugin has, in the runtime's order
--     ctx     {}            the ctx table to start from
--     status  200           ctx.status for log when access did not answer
--   Returns status, body, headers (what access returned to answer early, or
--   nils) and ctx. An error raised by a phase or by init is raised again,
--   so `assert.has_error` sees it.
--
-- h.load(plugin, conf?, global?)
--   Only the loading step of h.run: returns the plugin table and its
--   checked conf.
--
-- h.config(t?)
--   A config table normalised as aigw.config does for a file (defaults in).
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
local config = require "aigw.config"
local plugins = require "aigw.plugins"

local M = {}

M.prefix = aigw_core.prefix

local unpack = unpack
local function pack(...) return { n = select("#", ...), ... } end

function M.request(opts)
  return core.request(opts or {})
end

-- fn(...) in a coroutine of its own whose exdata is the request.
local function in_request(req, fn, ...)
  local co = coroutine.create(fn)
  core.exdata(co, req)
  local res = pack(coroutine.resume(co, ...))
  core.exdata(co, nil)
  if not res[1] then
    error(res[2], 0)
  end
  if coroutine.status(co) ~= "dead" then
    error("the code run for the request yielded, which it may not do here", 0)
  end
  return unpack(res, 2, res.n)
end

function M.with_request(req, fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #2 to 'with_request' (function expected, got " .. type(fn) .. ")", 2)
  end
  return in_request(req, fn, ...)
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

local PHASES = { "access", "log" }

function M.run(plugin, conf, req, opts)
  opts = opts or {}
  local global = M.config(opts.global)
  local p, pconf = M.load(plugin, conf, global)
  req = req or M.request()
  local ctx = opts.ctx or {}
  local phases = opts.phases
  if phases == nil then
    phases = {}
    for _, name in ipairs(PHASES) do
      if p[name] then phases[#phases + 1] = name end
    end
  end
  ctx.config = ctx.config or global
  return in_request(req, function()
    local status, body, headers
    for _, phase in ipairs(phases) do
      local fn = p[phase]
      if fn == nil then error("plugin " .. p.name .. " has no " .. phase .. " phase", 0) end
      if phase == "log" then
        ctx.status = status or opts.status or 200
        fn(pconf, ctx)
      elseif phase == "access" then
        if status == nil then status, body, headers = fn(pconf, ctx) end
      else
        fn(pconf, ctx)
      end
    end
    return status, body, headers, ctx
  end)
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

return M

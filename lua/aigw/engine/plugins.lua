-- aigw.engine.plugins -- loads the plugins a config names, checks their config
-- against their schema, and orders them by priority (higher first).
--
-- A plugin is plugins/<name>.lua returning { name, priority, schema?, jit?,
-- init?, init_worker?, access?, upstream?, header_filter?, body_filter?,
-- log? }. schema is a table of field = { type = "string" | "number" |
-- "boolean" | "table" | "array", required = bool, default = v }.
--
-- Plugin files run with the JIT off for all their functions (unless
-- server.plugin_jit): interpreted code is where the watchdog's hook can
-- stop a runaway loop (see core/lua/watchdog.h). Library code under lua/ stays
-- compiled. A plugin whose loops are all bounded by its input may say so
-- with `jit = true`: its functions are compiled once it has loaded, and so
-- can be the request path that calls them (LuaJIT cannot compile a trace
-- across a call into a function with the JIT off, so one such plugin in
-- access leaves the whole handler interpreted). The plugins that ship with
-- aigw do.

local M = {}

local function check(plugin, conf)
  local schema = plugin.schema or {}
  for field in pairs(conf) do
    if schema[field] == nil then
      error(string.format("plugin %s: config field '%s' is not known", plugin.name, tostring(field)), 0)
    end
  end
  for field, spec in pairs(schema) do
    local v = conf[field]
    if v == nil then
      if spec.required then
        error(string.format("plugin %s: config field '%s' is required (%s)", plugin.name, field, spec.type), 0)
      end
      conf[field] = spec.default
    else
      local want = spec.type
      local ok = want == "array" and type(v) == "table" or type(v) == want
      if not ok then
        error(string.format("plugin %s: config field '%s': expected %s, got %s",
                            plugin.name, field, want, type(v)), 0)
      end
    end
  end
  return conf
end
M.check = check   -- for the spec helpers, which load plugin tables directly

-- Returns the list of { plugin = module, conf = checked config }, sorted.
function M.load(prefix, list, global)
  local out = {}
  for i, entry in ipairs(list) do
    local path = prefix .. "/plugins/" .. entry.name .. ".lua"
    local f = io.open(path, "rb")
    if not f then error("plugin " .. entry.name .. ": not found (" .. path .. ")", 0) end
    local src = f:read("*a")
    f:close()
    -- A short chunk name, so errors and tracebacks name the file in full.
    local chunk, err = loadstring(src, "@plugins/" .. entry.name .. ".lua")
    if not chunk then error("plugin " .. entry.name .. ": " .. err, 0) end
    local jit_off = jit and not (global and global.server and global.server.plugin_jit)
    if jit_off then jit.off(chunk, true) end
    local ok, plugin = pcall(chunk)
    if not ok then error("plugin " .. entry.name .. ": " .. tostring(plugin), 0) end
    if type(plugin) ~= "table" then error("plugin " .. entry.name .. ": must return a table", 0) end
    if plugin.jit ~= nil and type(plugin.jit) ~= "boolean" then
      error("plugin " .. entry.name .. ": jit must be true or false", 0)
    end
    if jit_off and plugin.jit then jit.on(chunk, true) end
    plugin.name = plugin.name or entry.name
    if type(plugin.priority) ~= "number" then
      error("plugin " .. entry.name .. ": priority must be a number", 0)
    end
    local conf = check(plugin, entry.config)
    if plugin.init then plugin.init(conf, global) end
    out[#out + 1] = { plugin = plugin, conf = conf, order = i }
  end
  table.sort(out, function(a, b)
    if a.plugin.priority ~= b.plugin.priority then return a.plugin.priority > b.plugin.priority end
    return a.order < b.order
  end)
  return out
end

return M

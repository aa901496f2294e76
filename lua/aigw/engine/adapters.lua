-- aigw.engine.adapters -- route adapters: adapters/<name>.lua under the
-- prefix, each turning a route's own request and answer formats into a
-- chat request and back (docs/configuration.md, "Route adapters"). Named
-- like plugins (kebab-case, the file name without .lua), and loaded when a
-- worker starts:
--
--   local a, streams = adapters.load("seed-chat")
--
-- An adapter is a module, "adapters.<name>": loaded once per VM and shared
-- by every route naming it. What adapters share goes in a file of its own
-- there too, required by that name (require "adapters.seed-common").
--
-- An adapter returns request(body, ctx) -> chat request or nil, err;
-- response(chat_answer, ctx) -> table or string; for streams, chunk(self, c)
-- and finish(self) -> wire text, error_event(self, msg, type), start(self)
-- optional. An adapter without chunk and finish does not stream.

local find = string.find

local M = {}

local STREAM_FUNCTIONS = { "chunk", "finish", "error_event" }

-- require "adapters.<name>": <prefix>/adapters/<name>.lua, before the
-- package path is searched.
local function searcher(modname)
  local name = modname:match("^adapters%.([%w_-]+)$")
  if not name then return nil end
  local path = (aigw_core.prefix or ".") .. "/adapters/" .. name .. ".lua"
  local f = io.open(path, "rb")
  if not f then return "\n\tno file '" .. path .. "'" end
  f:close()
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  return chunk
end
table.insert(package.loaders, 2, searcher)

-- name: a file of adapters/ ("seed-chat"), or a Lua module on the package
-- path (a dotted name, "mycompany.chat_adapter": lua/ or plugins/).
function M.load(name)
  local ok, a = pcall(require, find(name, ".", 1, true) and name or "adapters." .. name)
  if not ok then error("route adapter " .. name .. ": " .. tostring(a), 0) end
  if type(a) ~= "table" or type(a.request) ~= "function" or type(a.response) ~= "function" then
    error("route adapter " .. name .. ": must return a table with request and response functions", 0)
  end
  local streams = a.chunk ~= nil or a.finish ~= nil or a.error_event ~= nil or a.start ~= nil
  if streams then
    for _, f in ipairs(STREAM_FUNCTIONS) do
      if type(a[f]) ~= "function" then
        error("route adapter " .. name .. ": a streaming adapter needs chunk, finish and error_event functions ("
              .. f .. " is " .. type(a[f]) .. ")", 0)
      end
    end
    if a.start ~= nil and type(a.start) ~= "function" then
      error("route adapter " .. name .. ": start must be a function", 0)
    end
  end
  return a, streams
end

return M

-- Access-line micro-benchmark: the access-log plugin's log phase for one
-- request, with the log writer running and stderr sent to /dev/null, in
-- text and in json, next to the line as Lua formatted it before the core
-- did (a field table, keys sorted, values quoted in Lua, one string to
-- aigw.log). Runs inside the runtime, on a real request:
--
--   build/aigw test tests/bench/log_bench.lua 2>/dev/null
--   ROUNDS=200000 build/aigw test tests/bench/log_bench.lua 2>/dev/null
--
-- Prints nanoseconds per line (best of 3) and the lines the writer dropped
-- meanwhile (a dropped line costs less than a written one: the figures
-- hold only when that count is 0). The writer's own work (write(2) of each
-- batch) is on its thread, not counted here.

local ffi = require "ffi"
require "aigw.ffi_defs"
local h = require "aigw.test.helpers"
local aigw = require "aigw"

local C = ffi.C
local ROUNDS = tonumber(os.getenv("ROUNDS")) or 100000

local plugin = dofile((h.prefix or ".") .. "/plugins/access-log.lua")

local ctx = {
  status = 200, provider = "anthropic", model = "claude-3-5-haiku-latest", consumer = 1,
  usage = { prompt_tokens = 1234, completion_tokens = 567, total_tokens = 1801 },
  cost = 0.00170312,
}

-- The line as the plugin and aigw.log built it before (kept here to compare).
local function before(_, c)
  if not aigw.log.enabled("info") then return end
  local req = aigw.request
  local f = {
    request_id = req.id(), method = req.get_method(), path = req.get_path(), status = c.status,
    ms = math.floor((aigw.monotonic() - req.start_time()) * 1000 + 0.5),
    provider = c.provider, model = c.model, attempts = c.attempts, consumer = c.consumer,
  }
  local u = c.usage
  if u then
    for _, k in ipairs({ "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
                         "reasoning_tokens", "cache_creation_tokens" }) do f[k] = u[k] end
    if u.partial then f.partial = true end
  end
  if c.cost then f.cost = string.format("%.6f", c.cost) end
  local keys = {}
  for k in pairs(f) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do
    local v = tostring(f[k])
    if v == "" or v:find('[%s"=]') then v = string.format("%q", v):gsub("\\\n", "\\n") end
    out[i] = k .. "=" .. v
  end
  local msg = "access " .. table.concat(out, " ")
  C.aigw_ffi_log(1, msg, #msg)
end

-- Timed in chunks of 1,000 lines (about 250 KB, under the writer's
-- high-water mark), the buffer written out between chunks, untimed: what is
-- measured is the line's cost to the worker, none of them dropped.
local CHUNK = 1000
local function time(fn)
  local best = math.huge
  for _ = 1, 3 do
    local t = 0
    for _ = 1, ROUNDS / CHUNK do
      local t0 = os.clock()
      for _ = 1, CHUNK do fn(nil, ctx) end
      t = t + os.clock() - t0
      C.aigw_log_flush()
    end
    best = math.min(best, t)
  end
  return best / ROUNDS * 1e9
end

describe("access line", function()
  it("costs", function()
    local saved_level, saved_format = C.aigw_log_level, C.aigw_log_format
    C.aigw_log_level = 1
    local req = h.request{ method = "POST", path = "/v1/chat/completions",
                           headers = { ["x-request-id"] = "0123456789abcdef0123456789abcdef" } }
    local rows = {}
    assert(C.aigw_log_writer_start() == 0)
    h.with_request(req, function()
      local d0 = C.aigw_ffi_log_dropped()
      rows[#rows + 1] = { "before: Lua fields, text", time(before) }
      C.aigw_log_format = 0
      rows[#rows + 1] = { "core, text", time(plugin.log) }
      C.aigw_log_format = 1
      rows[#rows + 1] = { "core, json", time(plugin.log) }
      C.aigw_log_format = 0
      C.aigw_log_level = 2
      rows[#rows + 1] = { "log_level warn (nothing written)", time(plugin.log) }
      rows.dropped = C.aigw_ffi_log_dropped() - d0
    end)
    C.aigw_log_writer_stop()
    C.aigw_log_level, C.aigw_log_format = saved_level, saved_format
    io.stdout:write("\n| access line | ns per line |\n|---|---|\n")
    for _, r in ipairs(rows) do io.stdout:write(string.format("| %s | %.0f |\n", r[1], r[2])) end
    io.stdout:write(string.format("\n%d rounds, best of 3; lines dropped meanwhile: %d\n", ROUNDS,
                                  rows.dropped))
  end)
end)

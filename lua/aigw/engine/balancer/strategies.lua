-- aigw.engine.balancer.strategies -- the order in which an alias's targets are
-- tried, one function per strategy.
--
-- Each is order(g, av, m, info, out, ctx): g is the balancer's group, av[1..m]
-- the indices of the targets that can take traffic (list order; a scratch
-- array the function may sort), and it appends those targets' tables to
-- `out`, the pick first. State that is kept between requests (smooth
-- weighted round-robin's current weights, round-robin's position) is per
-- worker, in the group: plan() does not yield, so no two requests touch it
-- at once. g.score is a scratch array by target index that g.by_score (a
-- comparator made once per group) sorts on: ascending, then list order.

local bit = require "bit"

local band, bxor, rshift, lshift, tobit = bit.band, bit.bxor, bit.rshift, bit.lshift, bit.tobit
local byte, floor, log, huge = string.byte, math.floor, math.log, math.huge
local sort, ipairs, type, pcall, tostring, error = table.sort, ipairs, type, pcall, tostring, error

local M = {}

-- Appends the targets of `static` (an index list fixed at new()) that can
-- take traffic, except `skip`.
local function append_static(g, static, skip, out)
  local ok, targets = g.ok, g.targets
  local n = #out
  for j = 1, #static do
    local i = static[j]
    if ok[i] and i ~= skip then
      n = n + 1
      out[n] = targets[i]
    end
  end
end

-- Appends av[1..m] (sorted by g.score) except `skip`.
local function append_sorted(g, av, m, skip, out)
  local targets = g.targets
  local n = #out
  for j = 1, m do
    local i = av[j]
    if i ~= skip then
      n = n + 1
      out[n] = targets[i]
    end
  end
end

-- nginx's smooth weighted round-robin over the indices av[1..m] for which
-- `only` is nil or only[i] == value: each round every candidate's current
-- weight grows by its weight, the largest wins and gives back the total.
-- Weights {5,1,1} give a a b a c a a.
local function swrr(g, cw, av, m, only, value)
  local recs = g.recs
  local total, best = 0, nil
  for j = 1, m do
    local i = av[j]
    if only == nil or only[i] == value then
      local w = recs[i].weight
      total = total + w
      cw[i] = cw[i] + w
      if best == nil or cw[i] > cw[best] then best = i end
    end
  end
  cw[best] = cw[best] - total
  return best
end

-- Then the rest by descending weight, then list order.
M.weighted = function(g, av, m, _, out)
  local pick = swrr(g, g.cw, av, m)
  out[#out + 1] = g.targets[pick]
  append_static(g, g.by_weight, pick, out)
end

-- Then the rest in rotation order.
M["round-robin"] = function(g, av, m, _, out)
  local start = g.rr % m
  g.rr = g.rr + 1
  local targets, n = g.targets, #out
  for j = 0, m - 1 do
    n = n + 1
    out[n] = targets[av[(start + j) % m + 1]]
  end
end

-- Fewest requests in flight across workers; targets tied at the fewest
-- share by smooth weighted round-robin (so two idle targets both get
-- traffic). Then the rest by in-flight count.
M["least-busy"] = function(g, av, m, _, out)
  local zone, recs, score = g.zone, g.recs, g.score
  local least = huge
  for j = 1, m do
    local i = av[j]
    local v = zone:get(recs[i].k_inflight) or 0
    if v < 0 then v = 0 end   -- a count that lost an entry to eviction
    score[i] = v
    if v < least then least = v end
  end
  local pick = swrr(g, g.cw_tied, av, m, score, least)
  out[#out + 1] = g.targets[pick]
  sort(av, g.by_score)
  append_sorted(g, av, m, pick, out)
end

-- Lowest moving average of time to first byte (of total time when no
-- first byte was timed); targets with no sample yet first, so new and
-- recovered ones get measured. With probability g.explore another target
-- is picked, so a slow one that got faster is noticed. Then by latency.
M["lowest-latency"] = function(g, av, m, _, out)
  local zone, recs, score = g.zone, g.recs, g.score
  for j = 1, m do
    local i = av[j]
    local rec = recs[i]
    score[i] = zone:get(rec.k_ttfb) or zone:get(rec.k_total) or -1
  end
  sort(av, g.by_score)
  local pick = av[1]
  if m > 1 and g.random() < g.explore then
    pick = av[2 + floor(g.random() * (m - 1))]
  end
  out[#out + 1] = g.targets[pick]
  append_sorted(g, av, m, pick, out)
end

-- Cheapest expected price: prompt tokens at the input price plus max_tokens
-- (256 when not given) at the output price; a model with no price last.
M.cost = function(g, av, m, info, out)
  local recs, score = g.recs, g.score
  local prompt = info and info.prompt_tokens or 0
  local completion = info and info.max_tokens or 256
  for j = 1, m do
    local i = av[j]
    local rec = recs[i]
    score[i] = rec.price_in and prompt * rec.price_in + completion * rec.price_out or huge
  end
  sort(av, g.by_score)
  append_sorted(g, av, m, nil, out)
end

M.priority = function(g, _, _, _, out)
  append_static(g, g.by_priority, nil, out)
end

local function select_fail(g, what)
  error("model '" .. g.alias .. "': select " .. what, 0)
end

-- The index (into g.targets) of one element of a select result; can: the
-- indices it may name.
local function chosen(g, list, can, v)
  if type(v) == "number" then
    if not list[v] then
      select_fail(g, "returned index " .. tostring(v) .. ": expected 1 to " .. #list)
    end
    v = list[v]
  end
  local i = g.index[v]
  if not i or not can[i] then
    select_fail(g, "returned " .. tostring(v) .. ": expected a target from the list it was given, "
                .. "its index, or a list of them")
  end
  return i
end

-- The user's function picks from the targets that can take traffic (a
-- target, its index, or an ordered list of them; nil leaves the order to
-- priority); the others follow by priority. It may wait (ask a routing
-- service through aigw.http): what it chooses from is copied out of the
-- group's scratch arrays first, which other requests' plans reuse
-- meanwhile. A half-open probe already in `out` stays first.
M.select = function(g, av, m, _, out, ctx)
  local list, can = {}, {}
  for j = 1, m do
    local i = av[j]
    list[j] = g.targets[i]
    can[i] = true
  end
  local ok, res = pcall(g.select, list, ctx)
  if not ok then select_fail(g, "failed: " .. tostring(res)) end
  local taken = {}
  local n = #out
  if type(res) == "table" and not g.index[res] and res[1] ~= nil then
    for k = 1, #res do
      local i = chosen(g, list, can, res[k])
      if not taken[i] then
        taken[i] = true
        n = n + 1
        out[n] = g.targets[i]
      end
    end
  elseif res ~= nil then
    local i = chosen(g, list, can, res)
    taken[i] = true
    n = n + 1
    out[n] = g.targets[i]
  end
  for _, i in ipairs(g.by_priority) do
    if can[i] and not taken[i] then
      n = n + 1
      out[n] = g.targets[i]
    end
  end
end

-- 32-bit multiply modulo 2^32, in halves so that no product passes 2^53.
local function mul32(a, b)
  return tobit(a * band(b, 0xffff) + lshift(tobit(a * rshift(b, 16)), 16))
end

-- MurmurHash3's finaliser: every input bit flips about half the output bits.
local function fmix32(h)
  h = bxor(h, rshift(h, 16))
  h = mul32(h, 0x85ebca6b)
  h = bxor(h, rshift(h, 13))
  h = mul32(h, 0xc2b2ae35)
  return bxor(h, rshift(h, 16))
end

-- FNV-1a (32 bits) of s, mixed: the same number in every worker and after
-- every restart. The multiply by the FNV prime 2^24 + 2^8 + 0x93 is done
-- as shifts and adds, which stay exact.
function M.hash(s)
  local h = tobit(0x811c9dc5)
  for k = 1, #s do
    h = bxor(h, byte(s, k))
    h = tobit(h + lshift(h, 1) + lshift(h, 4) + lshift(h, 7) + lshift(h, 8) + lshift(h, 24))
  end
  return fmix32(h)
end

-- Rendezvous (highest random weight) hashing: each target scores
-- -weight / ln(u), u uniform in (0, 1) from the hash of (key, target); the
-- highest wins. A key keeps its target while that target is available,
-- targets win keys in proportion to their weights, and when a target
-- leaves only its keys move.
function M.sticky(g, av, m, key, out)
  local recs, score = g.recs, g.score
  local hk = M.hash(key)
  for j = 1, m do
    local i = av[j]
    local rec = recs[i]
    local u = (fmix32(bxor(hk, rec.hash)) % 4294967296 + 0.5) / 4294967296
    score[i] = rec.weight / log(u)   -- negative: the best sorts first
  end
  sort(av, g.by_score)
  append_sorted(g, av, m, nil, out)
end

return M

-- Shared by the balancer specs (loaded with dofile): a seeded random
-- source, a clock the spec moves, and a balancer over one alias built
-- through the real config normaliser.
--
-- The zone is a real aigw.shared zone when `aigw test`'s config has one
-- (conf/gateway.lua declares limits); every build gets a new alias name,
-- so specs never see each other's counters there.

local bit = require "bit"
local config = require "aigw.engine.config"
local balancer = require "aigw.engine.balancer"
local shared = require "aigw.shared"

local F = {}

F.zone = shared.aigw_routing or shared.limits

-- xorshift32: the same sequence for the same seed, values in [0, 1).
function F.rng(seed)
  local s = seed or 2463534242
  return function()
    s = bit.bxor(s, bit.lshift(s, 13))
    s = bit.bxor(s, bit.rshift(s, 17))
    s = bit.bxor(s, bit.lshift(s, 5))
    return (s % 4294967296) / 4294967296
  end
end

function F.clock(t)
  local c = { t = t or 1000 }
  c.now = function() return c.t end
  return c
end

local uid = 0

-- A name no other build has used (aliases, providers for health checks).
-- Counted in the zone when there is one: each spec loads this file anew
-- (and busted resets package.loaded between files), while the zone, and
-- the counters the names key, outlive them all.
function F.name(prefix)
  if F.zone then return prefix .. "_" .. assert(F.zone:incr("spec:fixture-uid", 1, 0)) end
  uid = uid + 1
  return prefix .. "_" .. uid
end

-- alias_conf: one alias as written in a config. opts: memory (a zone in
-- Lua memory instead of the shared one), seed, prices, routing, alias.
-- Returns { g = group, b = balancer, clock = ..., alias = name }.
function F.build(alias_conf, opts)
  opts = opts or {}
  local alias = opts.alias or F.name("m")
  local providers = {}
  for _, t in ipairs(alias_conf.targets or { alias_conf }) do
    if t.provider ~= "mock" then
      providers[t.provider] = { kind = "openai-compatible", base_url = "http://127.0.0.1:1" }
    end
  end
  local c = config.normalise("spec.lua", { providers = providers, models = { [alias] = alias_conf },
                                           prices = opts.prices, routing = opts.routing })
  local clock = F.clock()
  local b = balancer.new(c.models, { zone = not opts.memory and F.zone or nil, now = clock.now,
                                     random = F.rng(opts.seed), prices = c.prices })
  return { g = b.groups[alias], b = b, clock = clock, alias = alias }
end

-- The models of a plan's list, in order.
function F.models(list)
  local t = {}
  for i, target in ipairs(list) do t[i] = target.model end
  return t
end

-- How often each model is picked first in n plans.
function F.picks(g, n, info)
  local count = {}
  for _ = 1, n do
    local m = g:plan({}, info or {})[1].model
    count[m] = (count[m] or 0) + 1
  end
  return count
end

return F

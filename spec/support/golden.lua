-- Golden cases (loaded with dofile, like the other support files): one file
-- per case, spec/golden/<suite>/<case>.json, of one shape,
--
--   { "input": ..., "expected": ... }
--
-- input is what the spec feeds the code, expected what the code must give
-- back; what each holds is the suite's, written down at the top of its spec
-- (spec/golden/README.md lists them). Files are read with aigw.json, so [] and
-- {} stay apart and numbers keep their digits.
--
--   local golden = dofile(h.prefix .. "/spec/support/golden.lua")
--   for _, name in ipairs(golden.names("gemini")) do
--     local case = golden.load("gemini", name)
--   end
--   if golden.writing then golden.save("gemini", name, case) end
--
-- AIGW_GOLDEN_WRITE=1 makes golden.writing true: a spec then writes the
-- expected values it got (=all: every case's, where a suite tells the two
-- apart). Review the diff before committing it.

local json = require "aigw.json"

local G = {}

G.DIR = "spec/golden/"

local mode = os.getenv("AIGW_GOLDEN_WRITE")
G.writing = (mode == "1" or mode == "all") and mode or nil

local function path(suite, name)
  return G.DIR .. suite .. "/" .. name .. ".json"
end

-- The suite's case names, sorted.
function G.names(suite)
  local names = {}
  local p = assert(io.popen("ls " .. G.DIR .. suite))
  for line in p:lines() do
    local name = line:match("^(.-)%.json$")
    if name then names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  return names
end

-- The case, decoded; raises when the file is missing or is not JSON.
function G.load(suite, name)
  local f = assert(io.open(path(suite, name), "rb"))
  local text = f:read("*a")
  f:close()
  local case, err = json.decode(text)
  assert(type(case) == "table", suite .. "/" .. name .. ": " .. tostring(err))
  return case
end

function G.save(suite, name, case)
  local f = assert(io.open(path(suite, name), "wb"))
  f:write(assert(json.encode(case)), "\n")
  f:close()
end

return G

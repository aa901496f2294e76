-- aigw.test.runner -- runs busted for `aigw test` (core/server/test_cmd.c).
--
-- run(args) hands args to busted's own command line (so its options,
-- --filter, -o, --list, ..., work as they do for `busted`) and returns the
-- exit status: 0 when every spec passed, 1 otherwise. Busted ends a failed
-- run with os.exit; here os.exit is replaced, for the run, by an error that
-- carries the status back to run(), so the process can tear down cleanly.

local M = {}

-- The marker of an os.exit from inside the run (a spec that calls it gets
-- an error saying so, not the end of the process).
local EXIT = { __tostring = function(e) return "os.exit(" .. tostring(e.code) .. ") called during the run" end }

-- busted's own option list, as its command line prints it for --help.
local function busted_help()
  local cli = require "busted.modules.cli"({ standalone = false, output = "plainTerminal" })
  cli:set_name("aigw test")
  local _, text = cli:parse({ "--help" })
  text = tostring(text):gsub("^aigw test: error: ", ""):gsub("; re%-run with %-%-help for usage%.%s*$", "")
  io.stdout:write(text, "\n")
  return 0
end

function M.run(args)
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then return busted_help() end
  end
  arg = { [0] = "aigw test" }
  for i, a in ipairs(args) do arg[i] = a end

  local real_exit = os.exit
  os.exit = function(code)
    if code == true or code == nil then code = 0 elseif code == false then code = 1 end
    error(setmetatable({ code = tonumber(code) or 1 }, EXIT), 0)
  end
  -- busted.runner finds "the file that called it" one level up the stack:
  -- called from a chunk with no file name it runs as a command line (it
  -- always ends through os.exit on failure, never by raising). No tail
  -- call, so that level is this chunk.
  local start = assert(loadstring("local runner = ...; runner({ standalone = false })", "=aigw test"))
  local ok, err = pcall(start, require "busted.runner")
  os.exit = real_exit
  if ok then return 0 end
  if getmetatable(err) == EXIT then return err.code end
  io.stderr:write("aigw test: ", tostring(err), "\n")
  return 1
end

return M

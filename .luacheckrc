-- .luacheckrc -- luacheck (Debian's lua-check) over every Lua file of the tree:
--
--   luacheck .
--
-- scripts/test.sh runs it before anything is built; a warning fails the suite.
-- Every Lua file runs on OpenResty's LuaJIT 2.1 (the runtime, aigw test, the
-- fuzz targets) or on wrk's LuaJIT (tests/bench/wrk/).

std = "luajit"
codes = true  -- show each warning's code, the one an inline "luacheck: ignore" names
max_line_length = 120

-- A method may leave self unused: providers answer one interface
-- (provider:path(endpoint), provider:serve(...)) whether or not they need it.
self = false

exclude_files = { "build/", "build-*/", "tests/sdk/node_modules/", "tests/integration/.tmp/",
                  "tests/bench/runs/" }

-- The one global the core sets in every VM (core/lua_vm.c): the C functions
-- that are not called through the FFI. Lua code reads it, never replaces it.
read_globals = { "aigw_core" }

files["spec/"] = {
  std = "+busted",
  -- A spec may replace a function of aigw_core for one case (and put it back).
  globals = { "aigw_core" },
  -- Specs hold provider captures and rows of (input, expected message), one
  -- to a line, so that each case reads as one line: no length limit there.
  max_line_length = false,
}

-- The busted runner behind `aigw test` sets busted's command line (arg) and
-- turns busted's os.exit into a return value, restoring it after.
files["lua/aigw/test/runner.lua"] = { globals = { "arg", "os.exit" } }
-- Fixed time for golden fixtures (helpers.pinned, the stream fuzz target),
-- restored after.
files["lua/aigw/test/helpers.lua"] = { globals = { "os.time" } }
files["tests/fuzz/stream.lua"] = { globals = { "os.time" } }

-- A wrk script sets up the global wrk table and defines wrk's callbacks as globals.
stds.wrk = { globals = { "wrk", "setup", "init", "delay", "request", "response", "done" } }
files["tests/bench/wrk/"] = { std = "+wrk" }
-- Benchmarks that run inside the runtime through `aigw test` are busted files.
files["tests/bench/log_bench.lua"] = { std = "+busted" }

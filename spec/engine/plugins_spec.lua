-- aigw.engine.plugins: loading plugins, checking their config against their
-- schema, and ordering them by priority.

local plugins = require "aigw.engine.plugins"
local lfs = require "lfs"

local prefix       -- a scratch prefix with a plugins/ directory per test

local function plugin_file(name, src)
  local f = assert(io.open(prefix .. "/plugins/" .. name .. ".lua", "wb"))
  f:write(src)
  f:close()
end

local function load(list, global)
  return plugins.load(prefix, list, global or {})
end

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("aigw.engine.plugins", function()
  before_each(function()
    prefix = os.tmpname()
    os.remove(prefix)
    assert(lfs.mkdir(prefix))
    assert(lfs.mkdir(prefix .. "/plugins"))
    plugin_file("allow", [[
      return {
        priority = 2400,
        schema = {
          header = { type = "string", default = "x-team" },
          allow  = { type = "array", required = true },
          limit  = { type = "number" },
          strict = { type = "boolean", default = false },
          extra  = { type = "table" },
        },
      }
    ]])
  end)

  after_each(function()
    for f in lfs.dir(prefix .. "/plugins") do
      if f ~= "." and f ~= ".." then os.remove(prefix .. "/plugins/" .. f) end
    end
    lfs.rmdir(prefix .. "/plugins")
    lfs.rmdir(prefix)
  end)

  describe("schema", function()
    it("fills in defaults and keeps given values", function()
      local list = load({ { name = "allow", config = { allow = { "a" }, limit = 3 } } })
      assert.equal(1, #list)
      assert.same({ header = "x-team", allow = { "a" }, limit = 3, strict = false }, list[1].conf)
      assert.equal("allow", list[1].plugin.name)   -- defaults to the file name
    end)

    it("accepts any table for an array field", function()
      local list = load({ { name = "allow", config = { allow = { x = 1 } } } })
      assert.same({ x = 1 }, list[1].conf.allow)
    end)

    it("rejects an unknown field, naming the plugin and the field", function()
      assert.equal("plugin allow: config field 'colour' is not known",
                   errmsg(load, { { name = "allow", config = { allow = {}, colour = "red" } } }))
    end)

    it("rejects a missing required field", function()
      assert.equal("plugin allow: config field 'allow' is required (array)",
                   errmsg(load, { { name = "allow", config = {} } }))
    end)

    it("rejects wrong types, naming the field and both types", function()
      assert.equal("plugin allow: config field 'allow': expected array, got string",
                   errmsg(load, { { name = "allow", config = { allow = "a" } } }))
      assert.equal("plugin allow: config field 'limit': expected number, got string",
                   errmsg(load, { { name = "allow", config = { allow = {}, limit = "3" } } }))
      assert.equal("plugin allow: config field 'strict': expected boolean, got number",
                   errmsg(load, { { name = "allow", config = { allow = {}, strict = 1 } } }))
      assert.equal("plugin allow: config field 'extra': expected table, got boolean",
                   errmsg(load, { { name = "allow", config = { allow = {}, extra = true } } }))
      assert.equal("plugin allow: config field 'header': expected string, got number",
                   errmsg(load, { { name = "allow", config = { allow = {}, header = 1 } } }))
    end)

    it("treats a plugin with no schema as taking no fields", function()
      plugin_file("bare", "return { priority = 1 }")
      assert.same({}, load({ { name = "bare", config = {} } })[1].conf)
      assert.equal("plugin bare: config field 'x' is not known",
                   errmsg(load, { { name = "bare", config = { x = 1 } } }))
    end)

    it("uses the plugin's own name in messages", function()
      plugin_file("file-name", "return { name = 'real-name', priority = 1, schema = {} }")
      assert.equal("plugin real-name: config field 'x' is not known",
                   errmsg(load, { { name = "file-name", config = { x = 1 } } }))
    end)
  end)

  describe("loading", function()
    it("names a plugin that is not there", function()
      local err = errmsg(load, { { name = "ghost", config = {} } })
      assert.equal("plugin ghost: not found (" .. prefix .. "/plugins/ghost.lua)", err)
    end)

    it("requires a numeric priority", function()
      plugin_file("nopri", "return {}")
      assert.equal("plugin nopri: priority must be a number", errmsg(load, { { name = "nopri", config = {} } }))
    end)

    it("takes jit as true or false only", function()
      plugin_file("badjit", 'return { priority = 1, jit = "yes" }')
      assert.equal("plugin badjit: jit must be true or false", errmsg(load, { { name = "badjit", config = {} } }))
      plugin_file("okjit", "return { priority = 1, jit = true, access = function() end }")
      assert.equal("okjit", load({ { name = "okjit", config = {} } })[1].plugin.name)
    end)

    it("requires the file to return a table", function()
      plugin_file("notable", "return 42")
      assert.equal("plugin notable: must return a table", errmsg(load, { { name = "notable", config = {} } }))
    end)

    it("names the file and line of a syntax error", function()
      plugin_file("broken", "return {\n  priority = ,\n}")
      local err = errmsg(load, { { name = "broken", config = {} } })
      assert.matches("^plugin broken: plugins/broken%.lua:2:", err)
    end)

    it("names the plugin when its file raises", function()
      plugin_file("raises", "error('boom', 0)")
      assert.equal("plugin raises: boom", errmsg(load, { { name = "raises", config = {} } }))
    end)

    it("calls init with the checked conf and the global config", function()
      plugin_file("init", [[
        return { priority = 1, schema = { n = { type = "number", default = 2 } },
                 init = function(conf, global) conf.double = conf.n * 2; conf.keys = global.api_keys end }
      ]])
      local list = load({ { name = "init", config = {} } }, { api_keys = { "k" } })
      assert.same({ n = 2, double = 4, keys = { "k" } }, list[1].conf)
    end)

    it("lets an error in init through", function()
      plugin_file("badinit", "return { priority = 1, init = function() error('no way', 0) end }")
      assert.equal("no way", errmsg(load, { { name = "badinit", config = {} } }))
    end)
  end)

  describe("order", function()
    it("runs higher priorities first, ties in config order", function()
      plugin_file("low", "return { priority = 10 }")
      plugin_file("high", "return { priority = 3000 }")
      plugin_file("mid1", "return { priority = 500 }")
      plugin_file("mid2", "return { priority = 500 }")
      local list = load({
        { name = "mid2", config = {} }, { name = "low", config = {} },
        { name = "high", config = {} }, { name = "mid1", config = {} },
      })
      local names = {}
      for i, p in ipairs(list) do names[i] = p.plugin.name end
      assert.same({ "high", "mid2", "mid1", "low" }, names)
    end)
  end)

  describe("the real plugins", function()
    it("load with the default config", function()
      local list = plugins.load(aigw_core.prefix, { { name = "key-auth", config = {} } }, { api_keys = {} })
      assert.equal("key-auth", list[1].plugin.name)
      assert.equal(2500, list[1].plugin.priority)
    end)
  end)
end)

-- aigw.engine.reply: whole answers the core followed itself hand over only
-- their "usage" member; the counts are read from its text.

local reply = require "aigw.engine.reply"

local function tapped(upstream, text, model)
  local ctx = {}
  local x = reply.new(ctx, { client = upstream, upstream = upstream, stream = false,
                             model = model or "gpt-4o-mini" })
  x:tapped(text)
  return ctx
end

describe("aigw.engine.reply tapped usage", function()
  it("reads OpenAI counts, cached and reasoning tokens included", function()
    local ctx = tapped("openai", '{"prompt_tokens":231,"completion_tokens":41,"total_tokens":272,' ..
      '"prompt_tokens_details":{"cached_tokens":200,"audio_tokens":0},' ..
      '"completion_tokens_details":{"reasoning_tokens":10}}')
    assert.same({ prompt_tokens = 231, completion_tokens = 41, total_tokens = 272,
                  cached_tokens = 200, reasoning_tokens = 10 }, ctx.usage)
    -- 31 plain input tokens at 0.15, 200 cached at 0.075, 41 output at 0.60 (USD per million)
    assert.near((31 * 0.15 + 200 * 0.075 + 41 * 0.60) / 1e6, ctx.cost, 1e-15)
  end)

  it("reads Anthropic counts, the cache reads and writes in prompt_tokens", function()
    local ctx = tapped("anthropic", '{"input_tokens":12,"cache_creation_input_tokens":100,' ..
      '"cache_read_input_tokens":50,"output_tokens":7,"service_tier":"standard"}', "claude-3-5-haiku-latest")
    assert.equal(162, ctx.usage.prompt_tokens)
    assert.equal(7, ctx.usage.completion_tokens)
    assert.equal(50, ctx.usage.cached_tokens)
    assert.equal(100, ctx.usage.cache_creation_tokens)
    assert.is_number(ctx.cost)
  end)

  it("records nothing when the answer had no usage", function()
    local ctx = tapped("openai", "")
    assert.is_nil(ctx.usage)
    assert.is_nil(ctx.cost)
  end)
end)

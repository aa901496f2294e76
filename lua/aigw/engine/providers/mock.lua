-- aigw.engine.providers.mock -- the built-in `echo` model: answers with the last
-- user message, with no network and no secrets. Token counts are words.
-- It speaks OpenAI's chat format; aigw.engine.dispatch.mock serves the other
-- inbound formats through the translators.

local cjson = require "cjson"
local request = require "aigw.request"

local M = {}
M.__index = M

M.format = "openai"
M.protocol = require "aigw.engine.protocols.openai"

function M.new(name)
  return setmetatable({ name = name, kind = "mock" }, M)
end

local function text_of(content)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return "" end
  local parts = {}
  for _, part in ipairs(content) do
    if type(part) == "table" and part.type == "text" and type(part.text) == "string" then
      parts[#parts + 1] = part.text
    end
  end
  return table.concat(parts, " ")
end

local function words(s)
  local n = 0
  for _ in tostring(s):gmatch("%S+") do n = n + 1 end
  return n
end

local function last_user_text(messages)
  for i = #messages, 1, -1 do
    local m = messages[i]
    if type(m) == "table" and m.role == "user" then return text_of(m.content) end
  end
  return ""
end

local function prompt_words(messages)
  local n = 0
  for _, m in ipairs(messages) do
    if type(m) == "table" then n = n + words(text_of(m.content)) end
  end
  return n
end

-- The number of words of a chat request's messages (its "prompt tokens").
function M.prompt_words(json)
  return prompt_words(type(json.messages) == "table" and json.messages or {})
end

function M:serve(ctx, endpoint, _, json)
  if endpoint ~= "chat/completions" then
    return require("aigw.errors").response(404, "not_found", "the echo model only serves chat completions")
  end
  local messages = type(json.messages) == "table" and json.messages or {}
  local reply = last_user_text(messages)
  local id = "chatcmpl-" .. request.id()
  local created = os.time()
  local prompt_tokens, completion_tokens = prompt_words(messages), words(reply)
  local usage = { prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
                  total_tokens = prompt_tokens + completion_tokens }
  ctx.usage, ctx.cost = { prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
                          total_tokens = prompt_tokens + completion_tokens }, 0
  if json.stream ~= true then
    return 200, cjson.encode({
      id = id, object = "chat.completion", created = created, model = "echo",
      choices = { { index = 0, message = { role = "assistant", content = reply },
                    logprobs = cjson.null, finish_reason = "stop" } },
      usage = usage,
    }), "Content-Type: application/json\r\n"
  end
  local out = {}
  local function chunk(delta, finish)
    out[#out + 1] = "data: " .. cjson.encode({
      id = id, object = "chat.completion.chunk", created = created, model = "echo",
      choices = { { index = 0, delta = delta, logprobs = cjson.null, finish_reason = finish or cjson.null } },
    }) .. "\n\n"
  end
  chunk({ role = "assistant", content = "" })
  for piece in reply:gmatch("%S+%s*") do chunk({ content = piece }) end
  chunk({}, "stop")
  local so = json.stream_options
  if type(so) == "table" and so.include_usage == true then
    -- cjson writes an empty table as {}; the wire format wants "choices":[].
    out[#out + 1] = string.format(
      'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":"echo","choices":[],"usage":%s}\n\n',
      cjson.encode(id), created, cjson.encode(usage))
  end
  out[#out + 1] = "data: [DONE]\n\n"
  return 200, table.concat(out), "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
end

return M

-- aigw.engine.protocols.anthropic -- Anthropic Messages: translation to and from
-- OpenAI Chat Completions (the hub format), its streams read and written,
-- its errors, usage and paths. The contract is in aigw.engine.protocols.
--
-- Pure functions over decoded tables (use aigw.json to decode and encode, so
-- [] and exact numbers survive). No I/O. See docs/translation.md.
--
--   local A = require "aigw.engine.protocols.anthropic"
--   local body, notes = A.request_from_hub(openai_req, { default_max_tokens = 4096 })
--   local resp = A.response_to_hub(anthropic_resp, model)
--   local t = A.stream_to_hub(model, { include_usage = true })
--   for _, chunk in ipairs(t:event(name, data)) do ... end ; t:usage()
--   (event returns chunks, err: err = { message, bound = true } past a bound below)
--
--   local req, notes = A.request_to_hub(anthropic_req)
--   local msg = A.response_from_hub(openai_resp, model)
--   local t = A.stream_from_hub(model)
--   for _, ev in ipairs(t:chunk(openai_chunk)) do send(ev[1], ev[2]) end ; t:finish()
--   (chunk returns events, err: err a message past a bound below)
--
--   A.error_parse(status, body) ; A.error_format(status, err)
--
-- A stream's translator holds a bounded state whatever the provider sends:
-- at most MAX_BLOCKS content blocks and MAX_TOOL_CALLS tool calls per
-- stream (past them the stream fails with err), and an id or a model name
-- from the stream that is repeated in every chunk, or kept, only when it
-- is at most MAX_ID bytes (a longer one is taken as absent). Each event's
-- output is then proportional to the event.

local json = require "aigw.json"
local hub = require "aigw.engine.protocols.openai"

local null, empty_array, array_mt = json.null, json.empty_array, json.array_mt
local type, ipairs, tostring, tonumber = type, ipairs, tostring, tonumber
local concat = table.concat
local gsub, match = string.gsub, string.match

local M = {}

M.name = "anthropic"

-- Answers made by the gateway for an Anthropic client carry the request id
-- in this header too, as Anthropic's own do (its SDKs read it).
M.request_id_header = "request-id"

M.DEFAULT_MAX_TOKENS = 4096

-- Far above any real answer (Anthropic's own limits are in the hundreds).
M.MAX_BLOCKS = 1024
M.MAX_TOOL_CALLS = 1024
M.MAX_ID = 256
local MAX_ID = M.MAX_ID

-- s when it is a string of at most MAX_ID bytes, else nil.
-- A provider's (or client's) id or name, written on as a string: anything
-- else (an object, a number) becomes d, never a value of another JSON type.
local function text_or(v, d)
  return type(v) == "string" and v or d
end

local function short(s)
  if type(s) == "string" and #s <= MAX_ID then return s end
  return nil
end

local function is_null(v) return v == nil or v == null end

local function arr(t) return setmetatable(t or {}, array_mt) end

-- Tool-call ids as Anthropic accepts them: ^[a-zA-Z0-9_-]+$. Every other
-- character becomes "_"; the same function is applied to every id in both
-- directions, so a call and its result keep matching.
function M.sanitize_id(id)
  if type(id) == "number" then id = tostring(id) end
  if type(id) ~= "string" or id == "" then return "toolu_" end
  return (gsub(id, "[^%w_%-]", "_"))
end
local sanitize_id = M.sanitize_id

-- Decodes a tool call's arguments to an object; {} and false when they are
-- not a JSON object.
local function parse_args(s)
  if type(s) == "table" and getmetatable(s) ~= array_mt then return s, true end
  if type(s) ~= "string" then return {}, s == nil or s == null end
  if match(s, "^%s*$") then return {}, true end
  local v = json.decode(s)
  if type(v) ~= "table" or getmetatable(v) == array_mt or (v[1] ~= nil) then
    return {}, false
  end
  return v, true
end

-- An object (a Lua table that must be written as {}, never []).
local function as_object(v)
  if type(v) ~= "table" or getmetatable(v) == array_mt then return {} end
  return v
end

-- Text of an OpenAI content value (string or parts), parts other than text ignored.
local openai_text = hub.text

---------------------------------------------------------------------------
-- OpenAI request -> Anthropic request

local function image_block(url, notes)
  if type(url) ~= "string" then
    notes[#notes + 1] = "image_url part without a url dropped"
    return nil
  end
  local mime, data = match(url, "^data:([^;,]+);base64,(.*)$")
  if mime then
    return { type = "image", source = { type = "base64", media_type = mime, data = data } }
  end
  if match(url, "^https?://") then
    return { type = "image", source = { type = "url", url = url } }
  end
  notes[#notes + 1] = "image_url that is neither a base64 data: URL nor http(s) dropped"
  return nil
end

-- OpenAI user/system content -> Anthropic blocks.
local function blocks_from_openai(content, notes)
  local blocks = {}
  if type(content) == "string" then
    blocks[1] = { type = "text", text = content }
    return blocks
  end
  if type(content) ~= "table" then return blocks end
  for _, p in ipairs(content) do
    local b
    if type(p) == "table" and p.type == "text" then
      b = { type = "text", text = p.text or "" }
    elseif type(p) == "table" and p.type == "image_url" then
      local iu = p.image_url
      b = image_block(type(iu) == "table" and iu.url or iu, notes)
    else
      notes[#notes + 1] = "content part of type " .. tostring(type(p) == "table" and p.type) .. " dropped"
    end
    if b then
      if type(p.cache_control) == "table" then b.cache_control = p.cache_control end
      blocks[#blocks + 1] = b
    end
  end
  return blocks
end

local function has_cache_control(content)
  if type(content) ~= "table" then return false end
  for _, p in ipairs(content) do
    if type(p) == "table" and p.cache_control then return true end
  end
  return false
end

-- The text of a tool message, as a string, or text blocks when it has parts.
local function tool_result_content(content)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return "" end
  local out = {}
  for _, p in ipairs(content) do
    if type(p) == "table" and p.type == "text" then
      local b = { type = "text", text = p.text or "" }
      if type(p.cache_control) == "table" then b.cache_control = p.cache_control end
      out[#out + 1] = b
    end
  end
  return arr(out)
end

local DROPPED_REQUEST_FIELDS = {
  "n", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
  "seed", "response_format", "service_tier", "modalities", "audio", "prediction",
}

function M.request_from_hub(req, opts)
  opts = opts or {}
  local notes = {}
  local out = { model = opts.model or req.model }

  local system = {}
  local system_cc = false
  local turns = {}   -- { role = , content = <string or blocks> }

  local function push(role, content)
    local last = turns[#turns]
    if last and last.role == role then
      -- Anthropic needs alternating roles: merge into the previous turn.
      if type(last.content) == "string" then
        last.content = { { type = "text", text = last.content } }
      end
      if type(content) == "string" then
        content = { { type = "text", text = content } }
      end
      for _, b in ipairs(content) do last.content[#last.content + 1] = b end
    else
      turns[#turns + 1] = { role = role, content = content }
    end
  end

  for i, m in ipairs(req.messages or {}) do
    local role = m.role
    if role == "system" or role == "developer" then
      if has_cache_control(m.content) then system_cc = true end
      for _, b in ipairs(blocks_from_openai(m.content, notes)) do
        if b.type == "text" then system[#system + 1] = b end
      end
    elseif role == "user" then
      if type(m.content) == "string" then
        push("user", m.content)
      else
        local blocks = blocks_from_openai(m.content, notes)
        if #blocks > 0 then push("user", blocks)
        else notes[#notes + 1] = "message " .. i .. ": empty user message dropped" end
      end
    elseif role == "assistant" then
      local blocks = {}
      if type(m.content) == "string" then
        if m.content ~= "" then blocks[1] = { type = "text", text = m.content } end
      elseif type(m.content) == "table" then
        for _, b in ipairs(blocks_from_openai(m.content, notes)) do
          if b.type == "text" and b.text ~= "" then blocks[#blocks + 1] = b end
        end
      end
      if type(m.tool_calls) == "table" then
        for _, tc in ipairs(m.tool_calls) do
          local fn = type(tc["function"]) == "table" and tc["function"] or {}
          local input, ok = parse_args(fn.arguments)
          if not ok then
            notes[#notes + 1] = "message " .. i .. ": tool call " .. tostring(tc.id) ..
                                " has arguments that are not a JSON object; sent as {}"
          end
          blocks[#blocks + 1] = { type = "tool_use", id = sanitize_id(tc.id),
                                  name = text_or(fn.name, ""), input = input }
        end
      end
      if #blocks > 0 then
        if #blocks == 1 and blocks[1].type == "text" and not blocks[1].cache_control then
          push("assistant", blocks[1].text)
        else
          push("assistant", blocks)
        end
      else
        notes[#notes + 1] = "message " .. i .. ": empty assistant message dropped"
      end
    elseif role == "tool" or role == "function" then
      local id = m.tool_call_id or m.name
      push("user", { { type = "tool_result", tool_use_id = sanitize_id(id),
                       content = tool_result_content(m.content) } })
    else
      notes[#notes + 1] = "message " .. i .. ": role " .. tostring(role) .. " dropped"
    end
  end

  if #system > 0 then
    if #system == 1 and not system_cc then
      out.system = system[1].text
    else
      out.system = system
    end
  end
  local msgs = {}
  for i, t in ipairs(turns) do msgs[i] = { role = t.role, content = t.content } end
  out.messages = arr(msgs)

  out.max_tokens = (not is_null(req.max_completion_tokens) and req.max_completion_tokens)
                   or (not is_null(req.max_tokens) and req.max_tokens)
                   or opts.default_max_tokens or M.DEFAULT_MAX_TOKENS
  if not is_null(req.temperature) then out.temperature = req.temperature end
  if not is_null(req.top_p) then out.top_p = req.top_p end
  if req.stream == true then out.stream = true end
  if type(req.stop) == "string" then
    out.stop_sequences = { req.stop }
  elseif type(req.stop) == "table" and req.stop[1] ~= nil then
    local s = {}
    for i, v in ipairs(req.stop) do s[i] = v end
    out.stop_sequences = s
  end
  local user = req.user
  if is_null(user) and type(req.metadata) == "table" then user = req.metadata.user end
  if type(user) == "string" then out.metadata = { user_id = user } end

  if type(req.tools) == "table" and req.tools[1] ~= nil then
    local tools = {}
    for _, t in ipairs(req.tools) do
      if type(t) == "table" and t.type == "function" and type(t["function"]) == "table" then
        local f = t["function"]
        local schema = type(f.parameters) == "table" and as_object(f.parameters)
                       or { type = "object", properties = {} }
        local tool = { name = f.name, input_schema = schema }
        if not is_null(f.description) then tool.description = f.description end
        if type(t.cache_control) == "table" then tool.cache_control = t.cache_control end
        tools[#tools + 1] = tool
      else
        notes[#notes + 1] = "tool of type " .. tostring(type(t) == "table" and t.type) .. " dropped"
      end
    end
    if #tools > 0 then out.tools = tools end
  end

  local tc, choice = req.tool_choice, nil
  if tc == "auto" then choice = { type = "auto" }
  elseif tc == "none" then choice = { type = "none" }
  elseif tc == "required" then choice = { type = "any" }
  elseif type(tc) == "table" and type(tc["function"]) == "table" then
    choice = { type = "tool", name = tc["function"].name }
  end
  if req.parallel_tool_calls == false and out.tools then
    choice = choice or { type = "auto" }
    if choice.type ~= "none" then choice.disable_parallel_tool_use = true end
  end
  if choice then out.tool_choice = choice end

  for _, k in ipairs(DROPPED_REQUEST_FIELDS) do
    local v = req[k]
    if not is_null(v) and v ~= false and not (k == "n" and v == 1) then
      notes[#notes + 1] = "field " .. k .. " dropped"
    end
  end
  return out, notes
end

---------------------------------------------------------------------------
-- Anthropic response -> OpenAI response

local FINISH = {
  end_turn = "stop", stop_sequence = "stop", pause_turn = "stop",
  max_tokens = "length", tool_use = "tool_calls", refusal = "content_filter",
}

local function finish_reason(stop_reason)
  if is_null(stop_reason) then return null end
  return FINISH[stop_reason] or "stop"
end

-- OpenAI usage from Anthropic usage. Anthropic's input_tokens excludes the
-- tokens read from or written to the prompt cache; OpenAI's prompt_tokens
-- counts every prompt token, so those are added in.
function M.usage_to_openai(u)
  if type(u) ~= "table" then return nil end
  local input = tonumber(u.input_tokens) or 0
  local read = tonumber(u.cache_read_input_tokens) or 0
  local created = tonumber(u.cache_creation_input_tokens) or 0
  local output = tonumber(u.output_tokens) or 0
  local prompt = input + read + created
  local usage = { prompt_tokens = prompt, completion_tokens = output, total_tokens = prompt + output }
  if read > 0 or created > 0 then
    usage.prompt_tokens_details = { cached_tokens = read }
  end
  return usage
end
local usage_to_openai = M.usage_to_openai

function M.response_to_hub(resp, model, opts)
  if type(resp.content) ~= "table" then
    return nil, { status = 502, message = "the provider's answer has no content", type = "api_error" }
  end
  opts = opts or {}
  local texts, calls = {}, {}
  for _, b in ipairs(resp.content or {}) do
    if b.type == "text" then
      texts[#texts + 1] = b.text or ""
    elseif b.type == "tool_use" then
      calls[#calls + 1] = { id = text_or(b.id, "call_" .. (#calls + 1)), type = "function",
                            ["function"] = { name = text_or(b.name, ""),
                                             arguments = json.encode(as_object(b.input)) } }
    end
  end
  local message = { role = "assistant" }
  local text = concat(texts)
  if #calls > 0 then
    message.content = (#texts > 0) and text or null
    message.tool_calls = calls
  else
    message.content = text
  end
  return {
    id = resp.id,
    object = "chat.completion",
    created = opts.created or os.time(),
    model = model or resp.model,
    choices = { { index = 0, message = message, finish_reason = finish_reason(resp.stop_reason),
                  logprobs = null } },
    usage = usage_to_openai(resp.usage),
  }
end

---------------------------------------------------------------------------
-- Anthropic stream -> OpenAI chunks

local FromAnthropic = {}
FromAnthropic.__index = FromAnthropic

function M.stream_to_hub(model, opts)
  opts = opts or {}
  return setmetatable({
    model = model, include_usage = opts.include_usage and true or false,
    created = opts.created or os.time(), id = opts.id,
    blocks = {}, nblocks = 0, ntools = 0, u = nil, done = false,
  }, FromAnthropic)
end

local chunk = hub.chunk

local function merge_usage(dst, src)
  if type(src) ~= "table" then return dst end
  dst = dst or {}
  for _, k in ipairs { "input_tokens", "output_tokens", "cache_read_input_tokens",
                       "cache_creation_input_tokens" } do
    -- message_delta's counts are totals: they replace, never add to, message_start's.
    if type(src[k]) == "number" then dst[k] = src[k] end
  end
  return dst
end

function FromAnthropic:event(name, data)
  data = type(data) == "table" and data or {}
  name = name or data.type
  local out = {}
  if name == "message_start" then
    local m = type(data.message) == "table" and data.message or {}
    self.id = self.id or short(m.id)
    if not self.model then self.model = short(m.model) end
    self.u = merge_usage(self.u, m.usage)
    out[1] = chunk(self, 0, { role = "assistant", content = "" })
  elseif name == "content_block_start" then
    local b = type(data.content_block) == "table" and data.content_block or {}
    -- The block's index is a key of self.blocks: a number, and a bounded
    -- count of them.
    local idx = data.index
    if type(idx) ~= "number" then idx = 0 end
    if self.blocks[idx] == nil then
      if self.nblocks >= M.MAX_BLOCKS then
        return out, { status = 502, type = "api_error", bound = true,
                      message = "too many content blocks (limit " .. M.MAX_BLOCKS .. ")" }
      end
      self.nblocks = self.nblocks + 1
    end
    if b.type == "tool_use" then
      local ti = self.ntools
      self.ntools = ti + 1
      self.blocks[idx] = { kind = "tool", index = ti }
      out[1] = chunk(self, 0, { tool_calls = { { index = ti, id = text_or(b.id, "call_" .. ti), type = "function",
                                            ["function"] = { name = text_or(b.name, ""), arguments = "" } } } })
    elseif b.type == "text" then
      self.blocks[idx] = { kind = "text" }
      if type(b.text) == "string" and b.text ~= "" then
        out[1] = chunk(self, 0, { content = b.text })
      end
    else
      self.blocks[idx] = { kind = "other" }   -- not the provider's string: it is kept
    end
  elseif name == "content_block_delta" then
    local d = type(data.delta) == "table" and data.delta or {}
    local blk = self.blocks[data.index or 0]
    if d.type == "text_delta" and type(d.text) == "string" and d.text ~= "" then
      out[1] = chunk(self, 0, { content = d.text })
    elseif d.type == "input_json_delta" and blk and blk.kind == "tool"
           and type(d.partial_json) == "string" and d.partial_json ~= "" then
      out[1] = chunk(self, 0, { tool_calls = { { index = blk.index,
                                            ["function"] = { arguments = d.partial_json } } } })
    end
  elseif name == "message_delta" then
    local d = type(data.delta) == "table" and data.delta or {}
    self.u = merge_usage(self.u, data.usage)
    if not is_null(d.stop_reason) then
      self.finish_reason = finish_reason(d.stop_reason)
      out[1] = chunk(self, 0, {}, self.finish_reason)
    end
  elseif name == "message_stop" then
    self.done = true
    if self.include_usage then
      out[1] = hub.usage_chunk(self, self:usage() or null)
    end
  elseif name == "error" then
    out[1] = hub.error_format(nil, M.error_parse(nil, data))
  end
  -- ping, content_block_stop and unknown events give nothing.
  return out
end

-- OpenAI usage so far (nil before the provider reported any).
function FromAnthropic:usage()
  return usage_to_openai(self.u)
end

-- The end of the stream: Anthropic's message_stop said all there was.
function FromAnthropic:finish()
  return {}
end

---------------------------------------------------------------------------
-- Anthropic request -> OpenAI request

local function system_text(system)
  if type(system) == "string" then return system end
  if type(system) ~= "table" then return nil end
  local out = {}
  for _, b in ipairs(system) do
    if type(b) == "table" and b.type == "text" then out[#out + 1] = b.text or "" end
  end
  if #out == 0 then return nil end
  return concat(out, "\n")
end

local function image_part(b, notes)
  local s = type(b.source) == "table" and b.source or {}
  if s.type == "base64" then
    return { type = "image_url",
             image_url = { url = "data:" .. tostring(s.media_type) .. ";base64," .. tostring(s.data) } }
  elseif s.type == "url" then
    return { type = "image_url", image_url = { url = s.url } }
  end
  notes[#notes + 1] = "image source of type " .. tostring(s.type) .. " dropped"
end

local function anthropic_result_text(content, notes)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return "" end
  local out = {}
  for _, b in ipairs(content) do
    if type(b) == "table" and b.type == "text" then out[#out + 1] = b.text or ""
    else notes[#notes + 1] = "tool_result block of type " ..
                             tostring(type(b) == "table" and b.type) .. " dropped" end
  end
  return concat(out, "\n")
end

function M.request_to_hub(areq, opts)
  opts = opts or {}
  local notes = {}
  local out = { model = opts.model or areq.model }
  local msgs = {}
  local sys = system_text(areq.system)
  if sys then msgs[1] = { role = "system", content = sys } end

  for i, m in ipairs(areq.messages or {}) do
    local content = m.content
    if m.role == "user" then
      if type(content) == "string" then
        msgs[#msgs + 1] = { role = "user", content = content }
      else
        local parts, ntext = {}, 0
        for _, b in ipairs(content or {}) do
          if b.type == "text" then
            parts[#parts + 1] = { type = "text", text = b.text or "" }
            ntext = ntext + 1
          elseif b.type == "image" then
            parts[#parts + 1] = image_part(b, notes)
          elseif b.type == "tool_result" then
            -- OpenAI wants tool messages right after the assistant's calls.
            local text = anthropic_result_text(b.content, notes)
            msgs[#msgs + 1] = { role = "tool", tool_call_id = b.tool_use_id, content = text }
            if b.is_error then notes[#notes + 1] = "tool_result is_error flag dropped" end
          else
            notes[#notes + 1] = "message " .. i .. ": block of type " .. tostring(b.type) .. " dropped"
          end
        end
        if #parts > 0 then
          if #parts == 1 and ntext == 1 then
            msgs[#msgs + 1] = { role = "user", content = parts[1].text }
          else
            msgs[#msgs + 1] = { role = "user", content = parts }
          end
        end
      end
    elseif m.role == "assistant" then
      local texts, calls = {}, {}
      if type(content) == "string" then
        texts[1] = content
      else
        for _, b in ipairs(content or {}) do
          if b.type == "text" then texts[#texts + 1] = b.text or ""
          elseif b.type == "tool_use" then
            calls[#calls + 1] = { id = text_or(b.id, "call_" .. (#calls + 1)), type = "function",
                                  ["function"] = { name = text_or(b.name, ""),
                                                   arguments = json.encode(as_object(b.input)) } }
          else
            notes[#notes + 1] = "message " .. i .. ": block of type " .. tostring(b.type) .. " dropped"
          end
        end
      end
      local msg = { role = "assistant" }
      if #texts > 0 then msg.content = concat(texts) else msg.content = null end
      if #calls > 0 then msg.tool_calls = calls end
      msgs[#msgs + 1] = msg
    else
      notes[#notes + 1] = "message " .. i .. ": role " .. tostring(m.role) .. " dropped"
    end
  end
  out.messages = arr(msgs)

  if not is_null(areq.max_tokens) then out.max_tokens = areq.max_tokens end
  if not is_null(areq.temperature) then out.temperature = areq.temperature end
  if not is_null(areq.top_p) then out.top_p = areq.top_p end
  if not is_null(areq.top_k) then notes[#notes + 1] = "field top_k dropped" end
  if type(areq.stop_sequences) == "table" and areq.stop_sequences[1] ~= nil then
    local s = {}
    for i, v in ipairs(areq.stop_sequences) do s[i] = v end
    out.stop = s
  end
  if areq.stream == true then
    out.stream = true
    out.stream_options = { include_usage = true }
  end
  if type(areq.metadata) == "table" and type(areq.metadata.user_id) == "string" then
    out.user = areq.metadata.user_id
  end

  if type(areq.tools) == "table" and areq.tools[1] ~= nil then
    local tools = {}
    for _, t in ipairs(areq.tools) do
      if t.input_schema ~= nil and (t.type == nil or t.type == "custom") then
        local f = { name = t.name, parameters = as_object(t.input_schema) }
        if not is_null(t.description) then f.description = t.description end
        tools[#tools + 1] = { type = "function", ["function"] = f }
      else
        notes[#notes + 1] = "tool " .. tostring(t.name) .. " of type " .. tostring(t.type) .. " dropped"
      end
    end
    if #tools > 0 then out.tools = tools end
  end
  local tc = areq.tool_choice
  if type(tc) == "table" then
    if tc.type == "auto" then out.tool_choice = "auto"
    elseif tc.type == "any" then out.tool_choice = "required"
    elseif tc.type == "none" then out.tool_choice = "none"
    elseif tc.type == "tool" then
      out.tool_choice = { type = "function", ["function"] = { name = tc.name } }
    end
    if tc.disable_parallel_tool_use == true and out.tools then out.parallel_tool_calls = false end
  end
  if out.tool_choice and not out.tools then out.tool_choice = nil end
  if not is_null(areq.thinking) then notes[#notes + 1] = "field thinking dropped" end
  return out, notes
end

---------------------------------------------------------------------------
-- OpenAI response -> Anthropic response

local STOP = {
  stop = "end_turn", length = "max_tokens", tool_calls = "tool_use",
  function_call = "tool_use", content_filter = "refusal",
}

local function stop_reason(fr)
  if is_null(fr) then return null end
  return STOP[fr] or "end_turn"
end

-- Anthropic usage from OpenAI usage: the cached part of prompt_tokens is
-- reported as cache_read_input_tokens and left out of input_tokens.
function M.usage_to_anthropic(u)
  local prompt = type(u) == "table" and tonumber(u.prompt_tokens) or 0
  local completion = type(u) == "table" and tonumber(u.completion_tokens) or 0
  local cached = type(u) == "table" and type(u.prompt_tokens_details) == "table"
                 and tonumber(u.prompt_tokens_details.cached_tokens) or 0
  local usage = { input_tokens = prompt - cached, output_tokens = completion }
  if cached > 0 then usage.cache_read_input_tokens = cached end
  return usage
end
local usage_to_anthropic = M.usage_to_anthropic

local function message_id(id)
  if type(id) ~= "string" or id == "" then return "msg_aigw" end
  if id:sub(1, 4) == "msg_" then return sanitize_id(id) end
  return "msg_" .. sanitize_id(id)
end

function M.response_from_hub(resp, model)
  local choice = type(resp.choices) == "table" and resp.choices[1] or {}
  local msg = type(choice.message) == "table" and choice.message or {}
  local content = {}
  local text = openai_text(msg.content)
  if text == "" and type(msg.refusal) == "string" then text = msg.refusal end
  if text ~= "" then content[1] = { type = "text", text = text } end
  if type(msg.tool_calls) == "table" then
    for _, tc in ipairs(msg.tool_calls) do
      local fn = type(tc["function"]) == "table" and tc["function"] or {}
      content[#content + 1] = { type = "tool_use", id = sanitize_id(tc.id), name = text_or(fn.name, ""),
                                input = (parse_args(fn.arguments)) }
    end
  end
  local reason = stop_reason(choice.finish_reason)
  -- Some OpenAI-compatible servers say "stop" after tool calls: a turn that
  -- calls tools ends with tool_use, as Anthropic clients expect.
  if #content > 0 and content[#content].type == "tool_use" and (reason == "end_turn" or reason == null) then
    reason = "tool_use"
  end
  return {
    id = message_id(resp.id), type = "message", role = "assistant",
    model = model or resp.model,
    content = arr(content),
    stop_reason = reason,
    stop_sequence = null,
    usage = usage_to_anthropic(resp.usage),
  }
end

---------------------------------------------------------------------------
-- OpenAI chunks -> Anthropic stream events

local ToAnthropic = {}
ToAnthropic.__index = ToAnthropic

function M.stream_from_hub(model, opts)
  opts = opts or {}
  return setmetatable({
    model = model, id = opts.id, started = false, ended = false,
    nblocks = 0, cur = nil, tools = {}, ntools = 0, fr = nil, u = nil,
  }, ToAnthropic)
end

function ToAnthropic:start(out, c)
  if self.started then return end
  self.started = true
  self.id = self.id or message_id(c and short(c.id))
  out[#out + 1] = { "message_start", {
    type = "message_start",
    message = { id = self.id, type = "message", role = "assistant",
                model = self.model or (c and short(c.model)), content = empty_array,
                stop_reason = null, stop_sequence = null,
                -- Input tokens are known only at the end: message_delta has them.
                usage = { input_tokens = 0, output_tokens = 0 } },
  } }
end

function ToAnthropic:close(out)
  if self.cur then
    out[#out + 1] = { "content_block_stop", { type = "content_block_stop", index = self.cur.index } }
    self.cur = nil
  end
end

function ToAnthropic:open(out, kind, block)
  self:close(out)
  local idx = self.nblocks
  self.nblocks = idx + 1
  self.cur = { kind = kind, index = idx }
  self.last_kind = kind
  out[#out + 1] = { "content_block_start",
                    { type = "content_block_start", index = idx, content_block = block } }
  return self.cur
end

function ToAnthropic:finish_events(out)
  if self.ended then return out end
  self:start(out)
  self:close(out)
  self.ended = true
  local usage = usage_to_anthropic(self.u)
  local reason = self.fr and stop_reason(self.fr) or "end_turn"
  if self.last_kind == "tool" and reason == "end_turn" then reason = "tool_use" end
  out[#out + 1] = { "message_delta", {
    type = "message_delta",
    delta = { stop_reason = reason, stop_sequence = null },
    usage = usage,
  } }
  out[#out + 1] = { "message_stop", { type = "message_stop" } }
  return out
end

function ToAnthropic:chunk(c)
  local out = {}
  if self.ended or type(c) ~= "table" then return out end
  if type(c.error) == "table" then
    self.ended = true
    out[1] = { "error", { type = "error",
                          error = { type = c.error.type or "api_error",
                                    message = c.error.message or "upstream stream error" } } }
    return out
  end
  self:start(out, c)
  local choice = type(c.choices) == "table" and c.choices[1]
  if type(choice) == "table" then
    local d = type(choice.delta) == "table" and choice.delta or {}
    if type(d.content) == "string" and d.content ~= "" then
      if not (self.cur and self.cur.kind == "text") then
        self:open(out, "text", { type = "text", text = "" })
      end
      out[#out + 1] = { "content_block_delta", { type = "content_block_delta", index = self.cur.index,
                                                 delta = { type = "text_delta", text = d.content } } }
    end
    if type(d.tool_calls) == "table" then
      for pos, tc in ipairs(d.tool_calls) do
        local key = tonumber(tc.index)
        if key == nil or key ~= key then key = pos - 1 end   -- NaN is no table key
        local fn = type(tc["function"]) == "table" and tc["function"] or {}
        local blk = self.tools[key]
        local has_id = type(tc.id) == "string" and tc.id ~= "" and #tc.id <= MAX_ID
        -- A new call: a new index, or (from servers that number every call
        -- 0) a new id. Servers that repeat the id on every piece are fine.
        if not blk or (has_id and tc.id ~= blk.id) then
          if self.ntools >= M.MAX_TOOL_CALLS then
            return out, "too many tool calls (limit " .. M.MAX_TOOL_CALLS .. ")"
          end
          self.ntools = self.ntools + 1
          local id = sanitize_id(has_id and tc.id or ("toolu_" .. key))
          blk = self:open(out, "tool", { type = "tool_use", id = id, name = text_or(fn.name, ""), input = {} })
          blk.id = has_id and tc.id or nil
          self.tools[key] = blk
        end
        if type(fn.arguments) == "string" and fn.arguments ~= "" then
          -- Providers stream one call after another; a late piece for an
          -- earlier call still goes to that call's block.
          out[#out + 1] = { "content_block_delta", {
            type = "content_block_delta", index = blk.index,
            delta = { type = "input_json_delta", partial_json = fn.arguments } } }
        end
      end
    end
    if not is_null(choice.finish_reason) then
      self.fr = choice.finish_reason
      self:close(out)
    end
  end
  if type(c.usage) == "table" then self.u = c.usage end
  -- The usage chunk (include_usage) follows the finish_reason chunk: end once
  -- both are known; otherwise finish() ends the message.
  if self.fr and self.u then self:finish_events(out) end
  return out
end

-- Ends the message when the stream ended before the usage chunk (or without
-- a finish_reason). Call it at the end of every stream; after a complete
-- message it returns an empty list.
function ToAnthropic:finish()
  local out = {}
  if self.ended then return out end
  return self:finish_events(out)
end

function ToAnthropic:usage()
  return self.u and usage_to_anthropic(self.u) or nil
end

---------------------------------------------------------------------------
-- Error bodies

-- Anthropic's error types by HTTP status, for errors that come without one.
local ANTHROPIC_ERROR_TYPE = {
  [400] = "invalid_request_error", [401] = "authentication_error", [403] = "permission_error",
  [404] = "not_found_error", [413] = "request_too_large", [429] = "rate_limit_error",
  [500] = "api_error", [502] = "api_error", [503] = "overloaded_error", [504] = "api_error",
  [529] = "overloaded_error",
}
-- OpenAI's error types by Anthropic's.
local OPENAI_ERROR_TYPE = {
  invalid_request_error = "invalid_request_error", authentication_error = "authentication_error",
  permission_error = "permission_error", not_found_error = "not_found_error",
  request_too_large = "invalid_request_error", rate_limit_error = "rate_limit_error",
  api_error = "server_error", overloaded_error = "server_error",
}

-- An Anthropic error body ({"type":"error","error":{type,message}}) ->
-- { status, message, type, code }: the provider's message, its error type as
-- code, and OpenAI's type for it. `status` is the HTTP status, used when the
-- body says nothing.
function M.error_parse(status, body)
  local e = type(body) == "table" and type(body.error) == "table" and body.error or {}
  local atype = type(e.type) == "string" and e.type or ANTHROPIC_ERROR_TYPE[status] or "api_error"
  return {
    status = status,
    message = type(e.message) == "string" and e.message or ("upstream error" .. (status and (" " .. status) or "")),
    type = OPENAI_ERROR_TYPE[atype] or atype,
    code = atype,
  }
end

-- An error ({ message }) in Anthropic's envelope; the type comes from the
-- status, since OpenAI's own types do not map one to one.
function M.error_format(status, err)
  return { type = "error", error = {
    type = ANTHROPIC_ERROR_TYPE[status] or (status and status >= 500 and "api_error")
           or (status and status >= 400 and "invalid_request_error") or "api_error",
    message = err.message or ("upstream error" .. (status and (" " .. status) or "")),
  } }
end

-- count_tokens's answer: n input tokens.
function M.count_response(n)
  return { input_tokens = n }
end

---------------------------------------------------------------------------
-- usage

local function num(v)
  if type(v) == "number" then return v end
  return nil
end

-- Anthropic's usage -> normalised usage (see aigw.usage). Anthropic's
-- input_tokens counts only the input after the last cache breakpoint:
-- prompt_tokens is input_tokens + cache_read_input_tokens +
-- cache_creation_input_tokens, so that it means what OpenAI's prompt_tokens
-- means (all input); cached_tokens is cache_read_input_tokens and
-- cache_creation_tokens is cache_creation_input_tokens.
function M.usage(u)
  if u == nil then return nil end
  local input = num(u.input_tokens) or 0
  local read = num(u.cache_read_input_tokens)
  local created = num(u.cache_creation_input_tokens)
  local prompt = input + (read or 0) + (created or 0)
  local completion = num(u.output_tokens) or 0
  return {
    prompt_tokens = prompt,
    completion_tokens = completion,
    total_tokens = prompt + completion,
    cached_tokens = read,
    cache_creation_tokens = created,
  }
end

function M.answer_usage(resp)
  return M.usage(type(resp.usage) == "table" and resp.usage or nil)
end

-- The usage object one decoded stream event carries, and true: its counts
-- are merged over the stream's. message_start carries message.usage (input
-- tokens, and an output_tokens of 1 or so); message_delta carries totals
-- for the fields it names, which replace message_start's (never added).
function M.stream_usage(ev)
  local t = ev.type
  if t == "message_start" then
    return type(ev.message) == "table" and ev.message.usage, true
  elseif t == "message_delta" then
    return ev.usage, true
  end
  return nil
end

-- The events that carry usage, by name: a stream passed through decodes
-- only these.
M.usage_events = { message_start = true, message_delta = true }

-- The counts picked out of message_start or message_delta for an
-- accumulator, which keeps every number of every usage object it is given:
-- fields a provider makes up by the thousand would pile up over a stream.
local COUNTS = { "input_tokens", "output_tokens", "cache_read_input_tokens",
                 "cache_creation_input_tokens" }

local function event_usage(d)
  local t, u = d.type, nil
  if t == "message_start" then u = type(d.message) == "table" and d.message.usage
  elseif t == "message_delta" then u = d.usage end
  if type(u) ~= "table" then return nil end
  local picked = {}
  for i = 1, #COUNTS do
    local k = COUNTS[i]
    if type(u[k]) == "number" then picked[k] = u[k] end
  end
  return { type = "message_delta", usage = picked }
end
M.event_usage = event_usage

-- The stream event an accumulator takes for a usage object u.
function M.usage_event(u)
  return event_usage({ type = "message_delta", usage = u })
end

-- A whole answer's usage object from the counts the core read out of it
-- (count(name): the number, or nil).
function M.counted_usage(count)
  return { input_tokens = count("input_tokens"), output_tokens = count("output_tokens"),
           cache_read_input_tokens = count("cache_read_input_tokens"),
           cache_creation_input_tokens = count("cache_creation_input_tokens") }
end

---------------------------------------------------------------------------
-- the stream as the reply (aigw.engine.reply) reads and writes it

local decode, encode = json.decode, json.encode

M.reader = {
  -- One SSE event -> hub chunks; nil, message, type for the provider's
  -- error event; nil, message, type, why past the translator's bound.
  event = function(x, ev)
    local d = decode(ev.data)
    if type(d) ~= "table" then return {} end
    local name = ev.event or d.type
    if name == "error" then
      local e = type(d.error) == "table" and d.error or {}
      return nil, tostring(e.message or "upstream stream error"), e.type
    end
    if name == "message_start" or name == "message_delta" then
      local u = event_usage(d)
      if u then x.acc:event(u) end
    end
    local chunks, err = x.from:event(name, d)
    if err then return nil, err.message, err.type, err.bound and err.message end
    return chunks
  end,
  finish = function() return {} end,
}

local UNWRITABLE = hub.UNWRITABLE

-- Also returns whether message_stop was written: after it, nothing may
-- follow (not even an error event).
local function events(list)
  local out, stopped = {}, false
  for i, ev in ipairs(list) do
    local j = encode(ev[2])
    if not j then return concat(out), UNWRITABLE, stopped end
    out[i] = "event: " .. ev[1] .. "\ndata: " .. j .. "\n\n"
    if ev[1] == "message_stop" then stopped = true end
  end
  return concat(out), nil, stopped
end

M.writer = {
  start = function(x) x.to = M.stream_from_hub(x.model) end,
  chunk = function(x, c)
    local list, err = x.to:chunk(c)
    local s, werr, stopped = events(list)
    if stopped then x.stopped = true end
    return s, err or werr
  end,
  finish = function(x)
    local s, werr, stopped = events(x.to:finish())
    if stopped then x.stopped = true end
    return s, werr
  end,
  error_event = function(x, message, etype)
    -- The client's stream already ended with message_stop (the finish and
    -- the usage came before the upstream failed): nothing may follow it.
    -- The translator's having made one is not enough: an event before it
    -- that could not be written (a count out of range) left it unsent.
    if x.stopped then return "" end
    -- OpenAI error types name Anthropic's closely enough; servers' own
    -- failures are api_error.
    local t = (etype == "rate_limit_error" or etype == "overloaded_error"
               or etype == "invalid_request_error") and etype or "api_error"
    return "event: error\ndata: " .. encode({ type = "error",
      error = { type = t, message = message } }) .. "\n\n"
  end,
}

---------------------------------------------------------------------------
-- the fast path: text in, text out (docs/translation.md#the-fast-path)
--
-- request_from_hub_raw and response_to_hub_raw translate a body of the
-- common shape (text messages; an answer of text blocks) by copying the
-- values they pass on as raw slices (aigw.engine.protocols.raw), and give
-- what request_from_hub / response_to_hub followed by aigw.json.encode
-- give, once decoded. Anything else (tools, content parts, a name written
-- with escapes, a value of an unexpected type) is nil: the caller runs
-- the general translator on the same text.

local raw = require "aigw.engine.protocols.raw"
local str_buffer = require "string.buffer"

local nodes, key, first, plain, put = raw.nodes, raw.key, raw.first, raw.plain, raw.put

-- One buffer for the text being made; nothing here yields.
local OUT = str_buffer.new(4096)

-- Top-level members request_from_hub reads that the fast path does not
-- carry: unless null, the general translator takes the request.
local REQ_GENERAL = { tools = true, tool_choice = true, parallel_tool_calls = true }

-- Puts the string slices sl[2k-1], sl[2k] (k = from..to) as text blocks.
local function put_text_blocks(b, t, sl, from, to)
  b:put("[")
  for k = from, to do
    if k > from then b:put(",") end
    b:put('{"type":"text","text":')
    b:putcdata(t.p + sl[2 * k - 1], sl[2 * k] - sl[2 * k - 1])
    b:put("}")
  end
  b:put("]")
end

-- Scratch lists of slices (offsets), reused by every call: the system
-- texts, the turns' texts, and each turn's role and first and last text.
local SYS, SL, TR, TF, TL, TS = {}, {}, {}, {}, {}, {}

-- One message read: its role and content (a string's slice) added to the
-- system texts or the turns (merged with the previous turn of the same
-- role, as request_from_hub does). The new counts, or nil: not a message
-- the fast path takes.
local function add_message(role, cs, ce, nsys, nt, ns)
  if not cs then return nil end
  if role == "system" or role == "developer" then
    nsys = nsys + 1
    SYS[2 * nsys - 1], SYS[2 * nsys] = cs, ce
  elseif role == "user" or role == "assistant" then
    if role == "user" or ce - cs > 2 then   -- an empty assistant text is dropped
      ns = ns + 1
      SL[2 * ns - 1], SL[2 * ns] = cs, ce
      if nt > 0 and TR[nt] == role then
        TL[nt] = ns
      else
        nt = nt + 1
        TR[nt], TF[nt], TL[nt] = role, ns, ns
      end
    end
  else
    return nil
  end
  return nsys, nt, ns
end

-- An OpenAI chat request's text -> the Anthropic request's text, or nil.
-- model is the upstream name, opts as for request_from_hub. One loop over
-- the scanner's nodes (in the order of the text), so that LuaJIT compiles
-- it as one trace: top-level members (parent 0), the messages (parent
-- msgs), the members of the message being read (parent cur).
function M.request_from_hub_raw(text, model, opts)
  local t = raw.open(text)
  if not t then return nil end
  opts = opts or {}
  local temp, top_p, mt, mct, stop, user, meta
  local stream = false
  local msgs, cur = -2, -2
  local nsys, nt, ns = 0, 0, 0
  local role, cs, ce
  for i = 1, t.n - 1 do
    local m = nodes[i]
    local par = m.parent
    if cur >= 0 and par ~= cur then   -- past the message's members
      nsys, nt, ns = add_message(role, cs, ce, nsys, nt, ns)
      if not nsys then return nil end
      cur = -2
    end
    if par == 0 then
      local k = key(t, m)
      if not k then return nil end
      local c = first(t, m)
      if k == "messages" then
        if c ~= 91 then return nil end
        msgs, nsys, nt, ns = i, 0, 0, 0   -- (a repeated member: the last counts)
      elseif k == "temperature" or k == "top_p" or k == "max_tokens" or k == "max_completion_tokens" then
        local v
        if c ~= 110 then
          if not raw.short_number(t, m) then return nil end
          v = m
        end
        if k == "temperature" then temp = v
        elseif k == "top_p" then top_p = v
        elseif k == "max_tokens" then mt = v
        else mct = v end
      elseif k == "stream" then
        stream = c == 116
      elseif k == "stop" then
        if c == 123 then return nil end
        stop = (c == 34 or c == 91) and i or nil
      elseif k == "user" then
        user = m
      elseif k == "metadata" then
        meta = m
      elseif REQ_GENERAL[k] and c ~= 110 then
        return nil
      end
    elseif par == msgs then
      if first(t, m) ~= 123 then return nil end
      cur, role, cs, ce = i, nil, nil, nil
    elseif par == cur then
      local k = key(t, m)
      if not k then return nil end
      if k == "role" then
        role = plain(t, m)
        if not role then return nil end
      elseif k == "content" then
        if first(t, m) ~= 34 then return nil end
        cs, ce = m.vs, m.ve
      elseif k == "tool_calls" then
        return nil
      end
    end
  end
  if cur >= 0 then
    nsys, nt = add_message(role, cs, ce, nsys, nt, ns)
    if not nsys then return nil end
  end
  -- metadata.user_id: the user string, or metadata.user when user is null
  if (user == nil or first(t, user) == 110) and meta and (first(t, meta) == 123 or first(t, meta) == 91) then
    return nil
  end
  if user and first(t, user) ~= 34 then user = nil end

  local b = OUT:reset()
  b:put('{"model":', json.encode(opts.model or model))
  if nsys == 1 then
    b:put(',"system":')
    b:putcdata(t.p + SYS[1], SYS[2] - SYS[1])
  elseif nsys > 1 then
    b:put(',"system":')
    put_text_blocks(b, t, SYS, 1, nsys)
  end
  b:put(',"messages":[')
  for k = 1, nt do
    if k > 1 then b:put(",") end
    b:put('{"role":"', TR[k], '","content":')
    local f = TF[k]
    if f == TL[k] then
      b:putcdata(t.p + SL[2 * f - 1], SL[2 * f] - SL[2 * f - 1])
    else
      put_text_blocks(b, t, SL, f, TL[k])
    end
    b:put("}")
  end
  b:put('],"max_tokens":')
  if mct or mt then
    put(b, t, mct or mt)
  else
    b:put(json.encode(opts.default_max_tokens or M.DEFAULT_MAX_TOKENS))
  end
  if temp then b:put(',"temperature":'); put(b, t, temp) end
  if top_p then b:put(',"top_p":'); put(b, t, top_p) end
  if stream then b:put(',"stream":true') end
  if stop then
    local sn = nodes[stop]
    if first(t, sn) == 34 then
      b:put(',"stop_sequences":[')
      put(b, t, sn)
      b:put("]")
    elseif sn.next > stop + 1 then   -- a list of at least one
      b:put(',"stop_sequences":')
      put(b, t, sn)
    end
  end
  if user then
    b:put(',"metadata":{"user_id":')
    put(b, t, user)
    b:put("}")
  end
  b:put("}")
  local out = b:tostring()
  return out
end

local USAGE_COUNTS = { input_tokens = 1, cache_read_input_tokens = 2,
                       cache_creation_input_tokens = 3, output_tokens = 4 }

-- An Anthropic answer's text -> the hub answer's text and the answer's
-- normalised usage (M.answer_usage), or nil. created: the time to answer
-- with (default now). One loop over the nodes, as above: top-level
-- members, the content blocks, the members of the block being read, the
-- usage's members.
function M.response_to_hub_raw(text, model, created)
  local t = raw.open(text)
  if not t then return nil end
  local id, sr
  local content, usage, cur = -2, -2, -2
  local ty, xs, xe
  local nt = 0
  local c1, c2, c3, c4   -- USAGE_COUNTS, in order: nil when absent or null
  for i = 1, t.n - 1 do
    local m = nodes[i]
    local par = m.parent
    if cur >= 0 and par ~= cur then   -- past the block's members
      if ty == "text" then
        if not xs then return nil end
        nt = nt + 1
        TS[2 * nt - 1], TS[2 * nt] = xs, xe
      elseif ty == nil or ty == "tool_use" then
        return nil
      end
      cur = -2
    end
    if par == 0 then
      local k = key(t, m)
      if not k then return nil end
      local c = first(t, m)
      if k == "id" then
        if c ~= 34 then return nil end
        id = m
      elseif k == "content" then
        if c ~= 91 then return nil end
        content, nt = i, 0
      elseif k == "stop_reason" then
        sr = nil
        if c ~= 110 then
          sr = plain(t, m)
          if not sr then return nil end
        end
      elseif k == "usage" then
        if c == 91 then return nil end
        usage = c == 123 and i or -2
        c1, c2, c3, c4 = nil, nil, nil, nil
      end
    elseif par == content then
      if first(t, m) ~= 123 then return nil end
      cur, ty, xs, xe = i, nil, nil, nil
    elseif par == cur then
      local k = key(t, m)
      if not k then return nil end
      if k == "type" then
        ty = plain(t, m)
        if not ty then return nil end
      elseif k == "text" then
        if first(t, m) ~= 34 then return nil end
        xs, xe = m.vs, m.ve
      end
    elseif par == usage then
      local k = key(t, m)
      if not k then return nil end
      local at = USAGE_COUNTS[k]
      if at then
        local v
        if first(t, m) ~= 110 then
          v = raw.count(t, m)
          if not v then return nil end
        end
        if at == 1 then c1 = v elseif at == 2 then c2 = v elseif at == 3 then c3 = v else c4 = v end
      end
    end
  end
  if cur >= 0 then
    if ty == "text" then
      if not xs then return nil end
      nt = nt + 1
      TS[2 * nt - 1], TS[2 * nt] = xs, xe
    elseif ty == nil or ty == "tool_use" then
      return nil
    end
  end
  if content < 0 then return nil end

  local b = OUT:reset()
  b:put("{")
  if id then
    b:put('"id":')
    put(b, t, id)
    b:put(",")
  end
  b:put('"object":"chat.completion","created":', created or os.time(), ',"model":', json.encode(model),
        ',"choices":[{"index":0,"message":{"role":"assistant","content":"')
  for k = 1, nt do b:putcdata(t.p + TS[2 * k - 1] + 1, TS[2 * k] - TS[2 * k - 1] - 2) end
  b:put('"},"finish_reason":', sr and ('"' .. (FINISH[sr] or "stop") .. '"') or "null",
        ',"logprobs":null}]')
  local u
  if usage >= 0 then
    local input, read, made, output = c1 or 0, c2, c3, c4 or 0
    local prompt = input + (read or 0) + (made or 0)
    b:put(',"usage":{"prompt_tokens":', prompt, ',"completion_tokens":', output,
          ',"total_tokens":', prompt + output)
    if (read or 0) > 0 or (made or 0) > 0 then
      b:put(',"prompt_tokens_details":{"cached_tokens":', read or 0, "}")
    end
    b:put("}")
    u = { prompt_tokens = prompt, completion_tokens = output, total_tokens = prompt + output,
          cached_tokens = read, cache_creation_tokens = made }
  end
  b:put("}")
  local out = b:tostring()
  return out, u
end

---------------------------------------------------------------------------
-- paths, under the base URL (without the version). Called as
-- provider:path(endpoint, model, stream).

local PATHS = { messages = "/v1/messages", ["messages/count_tokens"] = "/v1/messages/count_tokens",
                ["chat/completions"] = "/v1/messages" }

function M.path(_, endpoint)
  return PATHS[endpoint]
end

return M

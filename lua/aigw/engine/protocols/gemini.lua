-- aigw.engine.protocols.gemini -- Gemini generateContent: translation from and to
-- OpenAI Chat Completions (the hub format), its streams read, its errors,
-- usage and paths. The contract is in aigw.engine.protocols.
--
-- Pure functions over tables: no I/O.
--
--   local gemini = require "aigw.engine.protocols.gemini"
--   local body, err = gemini.request_from_hub(openai_req, opts)
--   local resp, err = gemini.response_to_hub(gemini_resp, model, opts)
--   local st = gemini.stream_to_hub(model, opts)
--   local chunks, err = st:event(name, data) -- per SSE "data:" of ?alt=sse (name unused)
--   local chunks = st:finish()               -- at the end of the stream
--   local usage = st:usage()
--   local e = gemini.error_parse(status, body)  -- { status, message, type, code, retry_after }
--
-- Tool-call ids: Gemini has none. They are made up on the way back
-- ("call_" and 24 random letters and digits) and forgotten: on the next turn
-- the assistant message that carries the tool_calls holds both id and name,
-- so a tool message's name is found in the conversation itself.
--
-- opts of response_to_hub and stream_to_hub (all optional):
--   id        the completion id (default "chatcmpl-" .. responseId, or random)
--   created   unix time (default os.time())
--   make_id   function() returning a tool-call id (default random)
--   include_usage (stream) emit a final usage chunk with choices = []
-- See docs/translation-gemini.md.
--
-- A stream's state is bounded whatever Gemini sends: at most MAX_CHOICES
-- candidates (past them the stream fails with an error), and a responseId
-- past MAX_ID bytes is not used for the id repeated in every chunk.

local json = require "aigw.json"
local hub = require "aigw.engine.protocols.openai"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local concat = table.concat

local null, array_mt = json.null, json.array_mt

local M = {}

M.name = "gemini"

-- Gemini gives at most 8 candidates; OpenAI's n at most 128.
M.MAX_CHOICES = 128
M.MAX_ID = 256

---------------------------------------------------------------------------
-- ids

local ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

local random_bytes
do
  local ok, crypto = pcall(require, "aigw.crypto")
  if ok and type(crypto) == "table" and crypto.random_bytes then
    random_bytes = function(n)
      local ok2, b = pcall(crypto.random_bytes, n)
      if ok2 then return b end
    end
  end
end

local function random_token(n)
  local b = random_bytes and random_bytes(n)
  local out = {}
  for i = 1, n do
    local v = b and b:byte(i) or math.random(0, 255)
    local j = v % 62 + 1
    out[i] = ALNUM:sub(j, j)
  end
  return concat(out)
end

function M.new_tool_call_id()
  return "call_" .. random_token(24)
end

local ID_PATTERN = "^[a-zA-Z0-9_-]+$"

---------------------------------------------------------------------------
-- JSON Schema -> Gemini Schema
--
-- Gemini's Schema is an OpenAPI 3.0 subset. Keys it knows are kept, every
-- other key is dropped, recursively. "type": ["string", "null"] becomes
-- "type": "string", "nullable": true; "const" becomes a one-value "enum";
-- "oneOf" becomes "anyOf".

local SCHEMA_KEYS = {
  type = true, format = true, title = true, description = true,
  nullable = true, enum = true, maxItems = true, minItems = true,
  properties = true, required = true, minProperties = true,
  maxProperties = true, minLength = true, maxLength = true,
  pattern = true, example = true, anyOf = true, propertyOrdering = true,
  default = true, items = true, minimum = true, maximum = true,
}

-- String formats Gemini accepts; others are dropped.
local STRING_FORMATS = { enum = true, ["date-time"] = true }

local function is_array(t)
  if type(t) ~= "table" then return false end
  if getmetatable(t) == array_mt then return true end
  local n = #t
  if n == 0 then return false end
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end

local function clean_schema(s, depth)
  depth = depth or 0
  if type(s) ~= "table" or depth > 64 then return s end
  if is_array(s) then
    local out = setmetatable({}, array_mt)
    for i, v in ipairs(s) do out[i] = clean_schema(v, depth + 1) end
    return out
  end
  local out = {}
  for k, v in pairs(s) do
    if k == "properties" and type(v) == "table" then
      local props = {}
      for name, sub in pairs(v) do props[name] = clean_schema(sub, depth + 1) end
      out.properties = props
    elseif k == "oneOf" and s.anyOf == nil then
      out.anyOf = clean_schema(v, depth + 1)
    elseif k == "const" and s.enum == nil then
      out.enum = { v }
    elseif k == "type" and type(v) == "table" then
      local t, nullable = nil, false
      for _, x in ipairs(v) do
        if x == "null" then nullable = true elseif t == nil then t = x end
      end
      out.type = t
      if nullable then out.nullable = true end
    elseif SCHEMA_KEYS[k] then
      out[k] = clean_schema(v, depth + 1)
    end
  end
  if out.format and out.type == "string" and not STRING_FORMATS[out.format] then
    out.format = nil
  end
  -- Gemini takes "enum" on STRING only: a typeless enum becomes a string
  -- one, an enum on another type is dropped
  if type(out.enum) == "table" then
    if out.type == nil then out.type = "string" end
    if out.type == "string" then
      local e = setmetatable({}, array_mt)
      for i, v in ipairs(out.enum) do e[i] = type(v) == "string" and v or tostring(v) end
      out.enum = e
    else
      out.enum = nil
    end
  end
  return out
end
M.clean_schema = clean_schema

---------------------------------------------------------------------------
-- request

local function mime_from_url(url)
  local ext = url:match("%.([%w]+)$") or url:match("%.([%w]+)[?#]")
  ext = ext and ext:lower()
  return ({
    png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
    webp = "image/webp", heic = "image/heic", heif = "image/heif",
    pdf = "application/pdf", mp3 = "audio/mp3", wav = "audio/wav",
    mp4 = "video/mp4", txt = "text/plain",
  })[ext or ""]
end

local function image_part(url)
  if type(url) ~= "string" then return nil end
  local mime, data = url:match("^data:([^;,]+);base64,(.*)$")
  if mime then return { inlineData = { mimeType = mime, data = data } } end
  return { fileData = { fileUri = url, mimeType = mime_from_url(url) } }
end

-- OpenAI content (string or array of parts) -> list of Gemini parts
local function content_parts(content)
  local parts = {}
  if content == nil or content == null then return parts end
  if type(content) == "string" then
    if content ~= "" then parts[1] = { text = content } end
    return parts
  end
  if type(content) ~= "table" then return nil, "message content must be a string or an array" end
  for _, p in ipairs(content) do
    local t = type(p) == "table" and p.type
    if t == "text" then
      if type(p.text) == "string" and p.text ~= "" then parts[#parts + 1] = { text = p.text } end
    elseif t == "image_url" then
      local iu = p.image_url
      local url = type(iu) == "table" and iu.url or iu
      local part = image_part(url)
      if not part then return nil, "image_url part without a url" end
      parts[#parts + 1] = part
    elseif t == "input_audio" and type(p.input_audio) == "table" then
      parts[#parts + 1] = { inlineData = {
        mimeType = "audio/" .. tostring(p.input_audio.format or "wav"),
        data = p.input_audio.data } }
    elseif t == "file" and type(p.file) == "table" and type(p.file.file_data) == "string" then
      local part = image_part(p.file.file_data)
      if part then parts[#parts + 1] = part end
    end
    -- other part types (refusal, ...) have no Gemini form and are dropped
  end
  return parts
end

local content_text = hub.text

local FINISH_MAP -- defined below

local CHOICE_MODES = { auto = "AUTO", none = "NONE", required = "ANY" }

local THINKING_BUDGETS = { minimal = 0, none = 0, low = 1024, medium = 8192, high = 24576 }

-- Thought signatures travel as Google's own OpenAI-compatible endpoint
-- carries them: tool_calls[i].extra_content.google.thought_signature.
local SKIP_SIGNATURE = "skip_thought_signature_validator"

local function signature_of(tc)
  local ec = tc.extra_content
  local g = type(ec) == "table" and ec.google
  local sig = type(g) == "table" and g.thought_signature
  return type(sig) == "string" and sig ~= "" and sig or nil
end

local function needs_signature(model)
  local major = tonumber(model:match("^gemini%-(%d+)"))
  return major ~= nil and major >= 3
end

-- A request Gemini cannot be given (an unknown role, a tool result with an
-- unknown id, arguments that are not a JSON object) is the client's error.
local function bad(message)
  return { status = 400, message = message, type = "invalid_request_error" }
end

function M.request_from_hub(req, opts)
  opts = opts or {}
  if type(req) ~= "table" then return nil, bad("the request must be an object") end
  local model = opts.model or req.model
  if type(model) ~= "string" or model == "" then return nil, bad("model is required") end
  model = model:gsub("^models/", "")
  local messages = req.messages
  if type(messages) ~= "table" then return nil, bad("messages must be an array") end

  local body = {}
  local contents = setmetatable({}, array_mt)
  local system_parts = {}
  local names = {}       -- tool_call id -> function name, from assistant turns

  local function push(role, parts)
    if #parts == 0 then return end
    local last = contents[#contents]
    if last and last.role == role then
      for _, p in ipairs(parts) do last.parts[#last.parts + 1] = p end
    else
      contents[#contents + 1] = { role = role, parts = parts }
    end
  end

  for i, m in ipairs(messages) do
    if type(m) ~= "table" then return nil, bad("messages[" .. i .. "] must be an object") end
    local role = m.role
    if role == "system" or role == "developer" then
      local text = content_text(m.content)
      if text ~= "" then system_parts[#system_parts + 1] = { text = text } end
    elseif role == "user" then
      local parts, err = content_parts(m.content)
      if not parts then return nil, bad("messages[" .. i .. "]: " .. err) end
      push("user", parts)
    elseif role == "assistant" then
      local parts, err = content_parts(m.content)
      if not parts then return nil, bad("messages[" .. i .. "]: " .. err) end
      local first_call
      if type(m.tool_calls) == "table" then
        for _, tc in ipairs(m.tool_calls) do
          local fn = type(tc) == "table" and tc["function"]
          if type(fn) ~= "table" or type(fn.name) ~= "string" then
            return nil, bad("messages[" .. i .. "]: a tool call needs function.name")
          end
          local args = {}
          local a = fn.arguments
          if type(a) == "string" and a:match("%S") then
            local v = json.decode(a)
            if type(v) ~= "table" then
              return nil, bad("messages[" .. i .. "]: tool call arguments are not a JSON object")
            end
            args = v
          elseif type(a) == "table" then
            args = a
          end
          if tc.id ~= nil then names[tc.id] = fn.name end
          local part = { functionCall = { name = fn.name, args = args } }
          local sig = signature_of(tc)
          if sig then part.thoughtSignature = sig end
          if first_call == nil then first_call = part end
          parts[#parts + 1] = part
        end
      end
      -- Gemini 3 rejects a replayed turn whose first function call has no
      -- signature; Google's documented placeholder lets it through.
      if first_call and not first_call.thoughtSignature and needs_signature(model) then
        first_call.thoughtSignature = SKIP_SIGNATURE
      end
      push("model", parts)
    elseif role == "tool" or role == "function" then
      local name = (m.tool_call_id ~= nil and names[m.tool_call_id]) or m.name
      if type(name) ~= "string" then
        return nil, bad("messages[" .. i .. "]: no earlier tool call has id "
          .. tostring(m.tool_call_id))
      end
      local response
      if type(m.content) == "table" and not is_array(m.content) then
        response = m.content
      else
        response = { content = content_text(m.content) }
      end
      push("user", { { functionResponse = { name = name, response = response } } })
    else
      return nil, bad("messages[" .. i .. "]: unknown role " .. tostring(role))
    end
  end

  body.contents = contents
  if #system_parts > 0 then body.systemInstruction = { parts = system_parts } end

  local gc = {}
  local max = req.max_completion_tokens
  if max == nil or max == null then max = req.max_tokens end
  if type(max) == "number" then gc.maxOutputTokens = max end
  if type(req.temperature) == "number" then gc.temperature = req.temperature end
  if type(req.top_p) == "number" then gc.topP = req.top_p end
  if type(req.n) == "number" then gc.candidateCount = req.n end
  if type(req.seed) == "number" then gc.seed = req.seed end
  if type(req.presence_penalty) == "number" then gc.presencePenalty = req.presence_penalty end
  if type(req.frequency_penalty) == "number" then gc.frequencyPenalty = req.frequency_penalty end
  if req.logprobs == true then
    gc.responseLogprobs = true
    if type(req.top_logprobs) == "number" then gc.logprobs = req.top_logprobs end
  end
  if type(req.stop) == "string" then
    gc.stopSequences = { req.stop }
  elseif type(req.stop) == "table" and #req.stop > 0 then
    gc.stopSequences = req.stop
  end
  local rf = req.response_format
  if type(rf) == "table" then
    if rf.type == "json_object" then
      gc.responseMimeType = "application/json"
    elseif rf.type == "json_schema" then
      gc.responseMimeType = "application/json"
      local js = rf.json_schema
      if type(js) == "table" and type(js.schema) == "table" then
        gc.responseSchema = clean_schema(js.schema)
      end
    end
  end
  local effort = req.reasoning_effort
  if type(effort) == "string" and THINKING_BUDGETS[effort] then
    gc.thinkingConfig = { thinkingBudget = THINKING_BUDGETS[effort] }
  end
  if next(gc) then body.generationConfig = gc end

  if type(req.tools) == "table" then
    local decls = {}
    for _, t in ipairs(req.tools) do
      local fn = type(t) == "table" and t.type == "function" and t["function"]
      if type(fn) == "table" and type(fn.name) == "string" then
        local d = { name = fn.name, description = fn.description }
        local p = fn.parameters
        if type(p) == "table" then
          local c = clean_schema(p)
          -- an OBJECT with no properties is rejected: leave parameters out
          if not (c.type == "object" and (c.properties == nil or next(c.properties) == nil)) then
            d.parameters = c
          end
        end
        decls[#decls + 1] = d
      end
    end
    if #decls > 0 then body.tools = { { functionDeclarations = decls } } end
  end

  local tc = req.tool_choice
  if type(tc) == "string" and CHOICE_MODES[tc] then
    body.toolConfig = { functionCallingConfig = { mode = CHOICE_MODES[tc] } }
  elseif type(tc) == "table" and type(tc["function"]) == "table"
      and type(tc["function"].name) == "string" then
    body.toolConfig = { functionCallingConfig = {
      mode = "ANY", allowedFunctionNames = { tc["function"].name } } }
  end

  return body
end

-- countTokens: the body that counts what a hub request would send
-- ({generateContentRequest}), and the count its answer gives.
function M.count_request(req, model)
  local body, err = M.request_from_hub(req)
  if not body then return nil, err end
  body.model = "models/" .. model
  return { generateContentRequest = body }
end

function M.count_answer(resp)
  if type(resp) ~= "table" or type(resp.totalTokens) ~= "number" then return nil, "no totalTokens" end
  return resp.totalTokens
end

---------------------------------------------------------------------------
-- responses

FINISH_MAP = {
  STOP = "stop",
  MAX_TOKENS = "length",
  SAFETY = "content_filter",
  RECITATION = "content_filter",
  BLOCKLIST = "content_filter",
  PROHIBITED_CONTENT = "content_filter",
  SPII = "content_filter",
  IMAGE_SAFETY = "content_filter",
  LANGUAGE = "content_filter",
}

local function finish_reason(reason, had_tool_calls)
  if had_tool_calls and (reason == "STOP" or reason == nil) then return "tool_calls" end
  return FINISH_MAP[reason] or "stop"
end

-- usageMetadata -> OpenAI usage. completion_tokens counts the thinking
-- tokens too (OpenAI counts reasoning tokens in completion_tokens);
-- prompt_tokens counts toolUsePromptTokenCount too.
function M.usage_from_gemini(um)
  if type(um) ~= "table" then return nil end
  local thoughts = tonumber(um.thoughtsTokenCount)
  local prompt = (tonumber(um.promptTokenCount) or 0) + (tonumber(um.toolUsePromptTokenCount) or 0)
  local completion = (tonumber(um.candidatesTokenCount) or 0) + (thoughts or 0)
  local u = {
    prompt_tokens = prompt,
    completion_tokens = completion,
    total_tokens = tonumber(um.totalTokenCount) or (prompt + completion),
  }
  if tonumber(um.cachedContentTokenCount) then
    u.prompt_tokens_details = { cached_tokens = tonumber(um.cachedContentTokenCount) }
  end
  if thoughts then
    u.completion_tokens_details = { reasoning_tokens = thoughts }
  end
  return u
end

local function blocked_error(pf)
  local reason = pf.blockReason
  local msg = "the prompt was blocked by Gemini: " .. tostring(reason)
  if type(pf.blockReasonMessage) == "string" then msg = msg .. " (" .. pf.blockReasonMessage .. ")" end
  return { status = 400, message = msg, type = "invalid_request_error", code = "content_filter" }
end

-- Parts -> text, list of tool calls. Thought parts are left out.
local function read_parts(parts, make_id)
  local text, calls = {}, {}
  if type(parts) ~= "table" then return text, calls end
  for _, p in ipairs(parts) do
    if type(p) == "table" and not p.thought then
      if type(p.text) == "string" then
        text[#text + 1] = p.text
      elseif type(p.functionCall) == "table" then
        local fc = p.functionCall
        local id = fc.id
        if type(id) ~= "string" or not id:match(ID_PATTERN) then id = make_id() end
        local args = fc.args
        if type(args) ~= "table" then args = {} end
        local call = { id = id, type = "function",
          ["function"] = { name = type(fc.name) == "string" and fc.name or "", arguments = json.encode(args) or "{}" } }
        if type(p.thoughtSignature) == "string" then
          call.extra_content = { google = { thought_signature = p.thoughtSignature } }
        end
        calls[#calls + 1] = call
      end
    end
  end
  return text, calls
end

local function completion_id(resp, opts)
  if opts.id then return opts.id end
  if type(resp) == "table" and type(resp.responseId) == "string" and #resp.responseId <= M.MAX_ID then
    return "chatcmpl-" .. resp.responseId
  end
  return "chatcmpl-" .. random_token(24)
end

function M.response_to_hub(resp, model, opts)
  opts = opts or {}
  if type(resp) ~= "table" then
    return nil, { status = 502, message = "Gemini answered with no JSON object", type = "api_error" }
  end
  local make_id = opts.make_id or M.new_tool_call_id
  local cands = resp.candidates
  if (type(cands) ~= "table" or #cands == 0) and type(resp.promptFeedback) == "table"
      and resp.promptFeedback.blockReason then
    return nil, blocked_error(resp.promptFeedback)
  end
  local choices = setmetatable({}, array_mt)
  for i, c in ipairs(type(cands) == "table" and cands or {}) do
    local content = type(c.content) == "table" and c.content.parts
    local text, calls = read_parts(content, make_id)
    local msg = { role = "assistant", content = #text > 0 and concat(text) or null }
    if #calls > 0 then msg.tool_calls = calls end
    choices[#choices + 1] = {
      index = tonumber(c.index) or (i - 1),
      message = msg,
      finish_reason = finish_reason(c.finishReason, #calls > 0),
      logprobs = null,
    }
  end
  local out = {
    id = completion_id(resp, opts),
    object = "chat.completion",
    created = opts.created or os.time(),
    model = model or resp.modelVersion,
    choices = choices,
  }
  out.usage = M.usage_from_gemini(resp.usageMetadata)
    or { prompt_tokens = 0, completion_tokens = 0, total_tokens = 0 }
  return out
end

---------------------------------------------------------------------------
-- streams

local Stream = {}
Stream.__index = Stream

function M.stream_to_hub(model, opts)
  opts = opts or {}
  return setmetatable({
    model = model,
    include_usage = opts.include_usage and true or false,
    id = opts.id,
    created = opts.created or os.time(),
    make_id = opts.make_id or M.new_tool_call_id,
    choices = {},    -- candidate index -> { started, tools, finished }
    nchoices = 0,
    last_usage = nil,
    done = false,
  }, Stream)
end

local chunk = hub.chunk

function Stream:state(index)
  local s = self.choices[index]
  if not s then
    s = { started = false, tools = 0, finished = false }
    self.choices[index] = s
  end
  return s
end

-- One parsed "data:" event. Returns a list of chunks, and an error object
-- (as error_parse) when the event is an error or a blocked prompt. The
-- event's name is not used: Gemini's events have none.
function Stream:event(_, data)
  local out = setmetatable({}, array_mt)
  if type(data) ~= "table" then return out end
  if not self.id then self.id = completion_id(data, {}) end
  if type(data.error) == "table" then
    self.failed = M.error_parse(tonumber(data.error.code) or 500, data)
    return out, self.failed
  end
  if type(data.usageMetadata) == "table" then self.last_usage = data.usageMetadata end
  local cands = data.candidates
  if (type(cands) ~= "table" or #cands == 0) and type(data.promptFeedback) == "table"
      and data.promptFeedback.blockReason then
    self.failed = blocked_error(data.promptFeedback)
    return out, self.failed
  end
  for i, c in ipairs(type(cands) == "table" and cands or {}) do
    local index = tonumber(c.index)
    if index == nil or index ~= index then index = i - 1 end   -- NaN is no table key
    if not self.choices[index] then
      if self.nchoices >= M.MAX_CHOICES then
        self.failed = { status = 502, type = "api_error", bound = true,
                        message = "too many candidates (limit " .. M.MAX_CHOICES .. ")" }
        return out, self.failed
      end
      self.nchoices = self.nchoices + 1
    end
    local s = self:state(index)
    local parts = type(c.content) == "table" and c.content.parts
    local text, calls = read_parts(parts, self.make_id)
    local delta = {}
    if not s.started then delta.role = "assistant"; s.started = true end
    local t = concat(text)
    if t ~= "" then delta.content = t end
    if #calls > 0 then
      for k, call in ipairs(calls) do
        call.index = s.tools + k - 1
      end
      s.tools = s.tools + #calls
      delta.tool_calls = calls
    end
    if next(delta) then
      if delta.role and delta.content == nil and delta.tool_calls == nil then delta.content = "" end
      out[#out + 1] = chunk(self, index, delta)
    end
    if c.finishReason and not s.finished then
      s.finished = true
      out[#out + 1] = chunk(self, index, {}, finish_reason(c.finishReason, s.tools > 0))
    end
  end
  return out
end

-- The end of the upstream stream: closes any choice still open and adds
-- the usage chunk when asked. The caller writes "data: [DONE]" after.
-- After an error (an error event, a blocked prompt) it returns no chunks:
-- the caller sends the error instead.
function Stream:finish()
  local out = setmetatable({}, array_mt)
  if self.done or self.failed then return out end
  self.done = true
  if not self.id then self.id = "chatcmpl-" .. random_token(24) end
  if next(self.choices) == nil then
    out[#out + 1] = chunk(self, 0, { role = "assistant", content = "" })
    self:state(0).started = true
  end
  local idx = {}
  for i in pairs(self.choices) do idx[#idx + 1] = i end
  table.sort(idx)
  for _, i in ipairs(idx) do
    local s = self.choices[i]
    if not s.finished then
      s.finished = true
      out[#out + 1] = chunk(self, i, {}, s.tools > 0 and "tool_calls" or "stop")
    end
  end
  if self.include_usage then
    out[#out + 1] = hub.usage_chunk(self, self:usage())
  end
  return out
end

-- Usage from the last usageMetadata seen (Gemini's are running totals).
function Stream:usage()
  return M.usage_from_gemini(self.last_usage)
    or { prompt_tokens = 0, completion_tokens = 0, total_tokens = 0 }
end

---------------------------------------------------------------------------
-- errors

local ERROR_TYPES = {
  [400] = "invalid_request_error", [401] = "authentication_error",
  [403] = "permission_error", [404] = "not_found_error",
  [413] = "invalid_request_error", [429] = "rate_limit_error",
}

-- A Gemini error body -> { status, message, type, code, retry_after }:
-- code is Gemini's status name (RESOURCE_EXHAUSTED), retry_after the
-- RetryInfo's retryDelay in whole seconds, rounded up.
function M.error_parse(status, body)
  status = tonumber(status) or 502
  if type(body) == "table" and body.error == nil and type(body[1]) == "table" then
    body = body[1]    -- errors of streamGenerateContent come as a one-element array
  end
  local e = type(body) == "table" and type(body.error) == "table" and body.error or {}
  local out = {
    status = status,
    message = type(e.message) == "string" and e.message
      or ("Gemini answered with status " .. status),
    type = ERROR_TYPES[status] or (status >= 500 and "api_error") or "invalid_request_error",
  }
  if type(e.status) == "string" then out.code = e.status end
  out.retry_after = hub.retry_delay(e.details)
  return out
end

-- An error in Gemini's envelope.
local STATUS_NAMES = {
  [400] = "INVALID_ARGUMENT", [401] = "UNAUTHENTICATED", [403] = "PERMISSION_DENIED",
  [404] = "NOT_FOUND", [429] = "RESOURCE_EXHAUSTED", [500] = "INTERNAL", [503] = "UNAVAILABLE",
  [504] = "DEADLINE_EXCEEDED",
}

function M.error_format(status, err)
  status = tonumber(status) or 500
  return { error = { code = status, message = err.message or ("upstream error " .. status),
                     status = STATUS_NAMES[status] or (status >= 500 and "INTERNAL" or "INVALID_ARGUMENT") } }
end

---------------------------------------------------------------------------
-- usage

local function num(v)
  if type(v) == "number" then return v end
  return nil
end

-- usageMetadata -> normalised usage (see aigw.usage). promptTokenCount
-- already includes cachedContentTokenCount. candidatesTokenCount leaves out
-- the thinking tokens (thoughtsTokenCount), which are billed as output:
-- completion_tokens is candidatesTokenCount + thoughtsTokenCount, and
-- reasoning_tokens is thoughtsTokenCount. toolUsePromptTokenCount is added
-- to prompt_tokens.
function M.usage(m)
  if m == nil then return nil end
  local thoughts = num(m.thoughtsTokenCount)
  local prompt = (num(m.promptTokenCount) or 0) + (num(m.toolUsePromptTokenCount) or 0)
  local completion = (num(m.candidatesTokenCount) or 0) + (thoughts or 0)
  return {
    prompt_tokens = prompt,
    completion_tokens = completion,
    total_tokens = num(m.totalTokenCount) or prompt + completion,
    cached_tokens = num(m.cachedContentTokenCount),
    reasoning_tokens = thoughts,
  }
end

function M.answer_usage(resp)
  return M.usage(type(resp.usageMetadata) == "table" and resp.usageMetadata or nil)
end

-- Every chunk may carry usageMetadata; the last one is the whole count
-- (the earlier ones are running figures), never summed.
function M.stream_usage(ev)
  return ev.usageMetadata
end

-- The stream event an accumulator takes for a usage object u.
function M.usage_event(u)
  return { usageMetadata = u }
end

---------------------------------------------------------------------------
-- the stream as the reply (aigw.engine.reply) reads it

local decode = json.decode

M.reader = {
  event = function(x, ev)
    local d = decode(ev.data)
    if type(d) ~= "table" then return {} end
    if type(d.usageMetadata) == "table" then x.acc:event(d) end
    local chunks, err = x.from:event(nil, d)
    if err then return nil, err.message, err.type, err.bound and err.message end
    return chunks
  end,
  finish = function(x) return x.from:finish() end,
}

---------------------------------------------------------------------------
-- paths: models/{model} and the method. Called as
-- provider:path(endpoint, model, stream).

local METHODS = { ["chat/completions"] = ":generateContent", messages = ":generateContent",
                  ["messages/count_tokens"] = ":countTokens" }

local escape = require("aigw.engine.providers.common").escape

function M.path(_, endpoint, model, stream)
  local m = METHODS[endpoint]
  if not m then return nil end
  if stream and m == ":generateContent" then m = ":streamGenerateContent?alt=sse" end
  return "/v1beta/models/" .. escape((model:gsub("^models/", ""))) .. m
end

return M

-- aigw.engine.dispatch -- one API request to the provider the router picked.
--
-- The pairing of the client's wire format with the provider's (each a
-- module of aigw.engine.protocols, looked up by name). Same format on both sides
-- (an OpenAI client to an OpenAI-kind provider, an Anthropic client to
-- Anthropic): the client's bytes go up (only "model" rewritten, and an
-- OpenAI stream asked for its usage), the answer streams back as it came,
-- and aigw.engine.reply reads its usage. Different formats: the request is
-- translated through the hub (OpenAI's chat format): the client's format
-- to the hub, the hub to the provider's; a stream is proxied and
-- translated event by event on its way back; a whole answer is fetched,
-- translated and answered here, so that a malformed one can still become
-- a 502.
--
-- Returns what the runtime's handler returns: status, body, headers, or
-- "proxy", target, path, body, header lines.

local json = require "aigw.json"
local cjson_safe = require "cjson.safe"
local errors = require "aigw.errors"
local request = require "aigw.request"
local response = require "aigw.response"
local reply = require "aigw.engine.reply"
local state = require "aigw.engine.state"
local protocols = require "aigw.engine.protocols"

local type, tostring, ipairs = type, tostring, ipairs
local find, sub = string.find, string.sub

local M = {}

-- Endpoints any OpenAI-kind provider serves as they are.
local OPENAI_ONLY = { completions = "/v1/completions", embeddings = "/v1/embeddings",
                      responses = "/v1/responses" }

local JSON_HEADERS = "Content-Type: application/json\r\n"

-- The head of an answer made here for a client of format cp: an
-- Anthropic client finds the request id where its SDK looks (the module's
-- request_id_header, request-id), as in Anthropic's own answers.
local function answer_headers(cp)
  local h = cp and cp.request_id_header
  if not h then return JSON_HEADERS end
  return JSON_HEADERS .. h .. ": " .. request.id() .. "\r\n"
end

---------------------------------------------------------------------------
-- the request body

-- The client's body for the provider: untouched, or with the upstream
-- model name; nil means "the client's bytes as they are". The new name
-- goes where the router's scan (request.get_json_fields) found the old
-- one, every other byte as the client sent it: a decode/encode round trip
-- through lua-cjson would turn [] into {} and cut numbers to 14 digits.
-- A body whose model member is written oddly (escaped key, twice) is
-- re-encoded instead, so that what is sent matches what was routed.
local function passthrough_body(ctx, model, upstream_model)
  if upstream_model == model then return nil end
  local e = state.of(ctx)
  local at = e.model_at
  if at and not e.fields_odd then
    local raw = request.get_body()
    return sub(raw, 1, at - 1) .. cjson_safe.encode(upstream_model) .. sub(raw, e.model_end + 1)
  end
  local j = request.get_json(ctx)
  j.model = upstream_model
  return json.encode(j)
end
M.passthrough_body = passthrough_body   -- for specs

-- The whole decoded request: j itself, unless it is only the members the
-- router read (request.get_json_fields).
local function whole(ctx, j)
  if j == state.of(ctx).fields then return request.get_json(ctx) end
  return j
end

-- An OpenAI chat stream asks for its usage chunk (so that tokens are
-- counted even when the client did not ask). Returns the body (nil: as it
-- was) and whether the client itself asked.
local function with_stream_usage(ctx, body, j, upstream_model)
  local so = j.stream_options
  if type(so) == "table" and so.include_usage == true then return body, true end
  if so == nil and not state.of(ctx).fields_odd then
    local raw = body or request.get_body()
    local at = find(raw, "{", 1, true)
    return sub(raw, 1, at) .. '"stream_options":{"include_usage":true},' .. sub(raw, at + 1), false
  end
  local w = whole(ctx, j)
  so = w.stream_options
  if type(so) ~= "table" then so = {}; w.stream_options = so end
  so.include_usage = true
  w.model = upstream_model
  return json.encode(w), false
end

---------------------------------------------------------------------------
-- fetching a whole answer

-- A translated answer is fetched whole up to this; past it the core's sink
-- stops and the client gets a 502 ("response body too large"). Far above a
-- translatable answer (text and tool calls are bounded by max_tokens), it
-- leaves room for what translation drops but the provider sends (Gemini's
-- inline images, Anthropic's fetched documents). Decoding costs more than
-- the bytes: a hostile answer of tiny arrays or objects makes Lua tables
-- many times its size (see aigw.json).
local MAX_ANSWER = 64 * 1024 * 1024

-- The client's headers that travel with a fetched request, as the proxy
-- forwards them: not framing, hop-by-hop, credentials, or what the
-- provider's own lines set.
local NOT_FORWARDED = {
  host = true, ["content-length"] = true, ["transfer-encoding"] = true, connection = true,
  ["keep-alive"] = true, te = true, trailer = true, upgrade = true, ["proxy-connection"] = true,
  expect = true, ["proxy-authorization"] = true, ["x-request-id"] = true,
  authorization = true, ["x-api-key"] = true, ["x-goog-api-key"] = true, ["api-key"] = true,
  ["accept-encoding"] = true, ["content-type"] = true, ["anthropic-version"] = true,
}

local function client_lines(provider)
  local out = {}
  for _, kv in ipairs(request.get_headers()) do
    local name = kv[1]:lower()
    if not NOT_FORWARDED[name] and not provider.sets[name] then
      out[#out + 1] = kv[1] .. ": " .. kv[2] .. "\r\n"
    end
  end
  return table.concat(out)
end

-- attempt_timeout (ctx._engine): the failover loop's bound for this attempt.
local function fetch(ctx, provider, path, body)
  local op = aigw_core.http_op()
  local lines = provider.fetch_lines .. client_lines(provider) .. "x-request-id: " .. request.id() .. "\r\n"
  local e = state.of(ctx)
  local status, headers, rbody = aigw_core.http_request(op, provider.target, "POST",
    provider.base_path .. path, lines, body, e.attempt_timeout or provider.timeouts.total, MAX_ANSWER,
    false, true, true, true, true)
  if not status then
    local err = tostring(headers)
    if find(err, "timeout", 1, true) then
      e.failed = { code = "upstream_timeout" }
      return nil, errors.response(504, "upstream_timeout", "upstream timeout (" .. provider.name .. ")")
    end
    e.failed = { code = "bad_gateway" }
    return nil, errors.response(502, "bad_gateway", "upstream " .. provider.name .. ": " .. err)
  end
  return status, headers, rbody
end

-- What error-mapping reads to tell a client when to retry.
local KEPT_ERROR_HEADERS = { { "retry-after", "Retry-After" },
                             { "x-ratelimit-reset-requests", "x-ratelimit-reset-requests" },
                             { "x-ratelimit-reset-tokens", "x-ratelimit-reset-tokens" } }

-- An upstream error answer, handed on for the error-mapping plugin (which
-- sees ctx.upstream_status and ctx.upstream_body) to reshape. failed
-- (ctx._engine) tells the failover loop what happened.
local function upstream_error(ctx, status, headers, body)
  ctx.upstream_status, ctx.upstream_body = status, body
  state.of(ctx).failed = { status = status, headers = headers, body = body }
  response._filter_errors()
  local lines = "Content-Type: " .. (headers["content-type"] or "application/json") .. "\r\n"
  for _, h in ipairs(KEPT_ERROR_HEADERS) do
    if headers[h[1]] then lines = lines .. h[2] .. ": " .. headers[h[1]] .. "\r\n" end
  end
  return status, body, lines
end
M.upstream_error = upstream_error

-- client: the client's protocol module, or a route adapter (its response
-- function); up: the provider's protocol module.
local function answer_whole(ctx, client, up, provider, path, body, model, x)
  local status, headers, rbody, lines = fetch(ctx, provider, path, body)
  if not status then return headers, rbody, lines end
  if status >= 400 then return upstream_error(ctx, status, headers, rbody) end
  if client.hub and up.response_to_hub_raw then
    -- The common shape, translated as text (nil: anything else).
    local out, usage = up.response_to_hub_raw(rbody, model)
    if out then
      x:set_usage(usage)
      return 200, out, JSON_HEADERS
    end
  end
  local d = json.decode(rbody)
  if type(d) ~= "table" then
    return errors.response(502, "bad_gateway", "malformed answer from " .. provider.name .. " (not JSON)")
  end
  local hub, err = up.response_to_hub(d, model)
  if not hub then
    local code = err.status or 502
    return errors.response(code, code == 502 and "bad_gateway" or "upstream_error", err.message)
  end
  x:set_usage(up.answer_usage(d))
  local out
  if client.response_from_hub then
    out = client.response_from_hub(hub, model)
  else
    out = client.response(hub, ctx)
  end
  if type(out) ~= "string" then out = json.encode(out) end
  return 200, out, client.request_id_header and answer_headers(client) or JSON_HEADERS
end

---------------------------------------------------------------------------

-- The built-in echo model speaks OpenAI chat; other inbound formats are
-- translated to it and its answer back, a stream in one go.
function M.mock(ctx, route, provider, j)
  local client, endpoint = route.client, route.endpoint
  if endpoint == "messages/count_tokens" then
    local cp = protocols[client]
    return 200, json.encode(cp.count_response(provider.prompt_words(cp.request_to_hub(j)))), answer_headers(cp)
  end
  if endpoint ~= "chat/completions" and endpoint ~= "messages" then
    return provider:serve(ctx, endpoint, nil, j)
  end
  local cp = protocols[client]   -- nil for a route adapter (its request made a hub one)
  if cp and cp.hub then return provider:serve(ctx, endpoint, nil, j) end
  local oreq = cp and cp.request_to_hub(j) or j
  local status, body, headers = provider:serve(ctx, "chat/completions", nil, oreq)
  if status ~= 200 then return status, body, headers end
  if oreq.stream == true then
    local x = reply.new(ctx, { client = client, upstream = "openai", stream = true, model = "echo",
                               include_usage = false })
    -- The echo model set ctx.usage and ctx.cost already: the reply must
    -- not count them again (from a usage chunk the request asked for, at a
    -- price echo does not have) before the client's writer reports them.
    x.done = true
    local _, head = x:head(200, headers)
    body = x:body(body, true)
    return 200, body, head
  end
  local hub = json.decode(body)
  local out = cp and cp.response_from_hub(hub, "echo") or client.response(hub, ctx)
  if type(out) ~= "string" then out = json.encode(out) end
  return 200, out, cp and cp.request_id_header and answer_headers(cp) or JSON_HEADERS
end

-- A client's count_tokens served by a provider whose format counts in its
-- own way (Gemini's models/{m}:countTokens): the request it would count,
-- the count back in the client's format.
local function count_through(ctx, cp, up, provider, j, upstream_model)
  local oreq = cp.request_to_hub(j)
  oreq.model = upstream_model
  local creq, err = up.count_request(oreq, upstream_model)
  if not creq then return errors.response(err.status, "invalid_request", err.message) end
  local status, headers, rbody, lines = fetch(ctx, provider,
    provider:path("messages/count_tokens", upstream_model), json.encode(creq))
  if not status then return headers, rbody, lines end
  if status >= 400 then return upstream_error(ctx, status, headers, rbody) end
  local n, why = up.count_answer(json.decode(rbody))
  if not n then
    return errors.response(502, "bad_gateway", "malformed answer from " .. provider.name .. " (" .. why .. ")")
  end
  return 200, json.encode(cp.count_response(n)), answer_headers(cp)
end

local FILTER_HEADERS, FILTER_BODY, FILTER_OBSERVE, FILTER_USAGE = 1, 2, 4, 16

local function proxy_through(provider, path, body, what)
  response._filter(what)
  return "proxy", provider.target, path, body
end

-- route.client: "openai", "anthropic", or a route adapter (its request
-- already made a chat request of the body); route.endpoint: the
-- provider-side operation. j: the decoded body; model: what the client
-- sent; upstream_model: what the provider gets.
function M.serve(ctx, route, provider, j, model, upstream_model, conf)
  local fmt, client, endpoint = provider.format, route.client, route.endpoint
  local stream = j.stream == true

  if OPENAI_ONLY[endpoint] then
    if fmt ~= "openai" then
      return errors.response(400, "unsupported_endpoint", "provider '" .. provider.name .. "' (" ..
        provider.kind .. ") does not serve " .. OPENAI_ONLY[endpoint])
    end
    local body, what, asked = passthrough_body(ctx, model, upstream_model),
                              stream and FILTER_OBSERVE or FILTER_OBSERVE + FILTER_USAGE, true
    if stream and endpoint == "completions" then
      -- Completions streams take stream_options too: counted like chat.
      body, asked = with_stream_usage(ctx, body, j, upstream_model)
      if not asked then what = FILTER_HEADERS + FILTER_BODY end
    end
    reply.new(ctx, { client = fmt, upstream = fmt, stream = stream, model = upstream_model,
                     include_usage = asked, injected_usage = not asked, prices = conf.prices })
    return proxy_through(provider, provider:path(endpoint, upstream_model), body, what)
  end

  if endpoint == "messages/count_tokens" then
    if fmt == client then
      return "proxy", provider.target, provider:path(endpoint), passthrough_body(ctx, model, upstream_model)
    end
    local up = provider.protocol
    if up.count_request then
      return count_through(ctx, protocols[client], up, provider, whole(ctx, j), upstream_model)
    end
    return errors.response(400, "unsupported_endpoint", "provider '" .. provider.name .. "' (" ..
      provider.kind .. ") does not count tokens; count_tokens needs an anthropic or gemini provider")
  end

  -- chat: Chat Completions, Messages, or a route adapter's format
  if client == fmt then
    -- A whole answer: the core follows it and hands over only its usage.
    local body, what, asked = passthrough_body(ctx, model, upstream_model),
                              stream and FILTER_OBSERVE or FILTER_OBSERVE + FILTER_USAGE, true
    if fmt == "openai" and stream then
      body, asked = with_stream_usage(ctx, body, j, upstream_model)
      -- Rewritten (the usage chunk left out): the head says whether the
      -- body is a stream or an error to leave alone.
      if not asked then what = FILTER_HEADERS + FILTER_BODY end
    elseif fmt == "anthropic" and j.max_tokens == nil then
      local w = whole(ctx, j)
      w.max_tokens, w.model = provider.max_tokens, upstream_model
      body = json.encode(w)
    end
    reply.new(ctx, { client = fmt, upstream = fmt, stream = stream, model = upstream_model,
                     include_usage = asked, injected_usage = not asked, prices = conf.prices })
    return proxy_through(provider, provider:path(endpoint, upstream_model), body, what)
  end

  -- Through the hub: the client's format to it (a route adapter's request
  -- made a hub request already), then the provider's from it.
  local cp = protocols[client]   -- nil for a route adapter
  local up = provider.protocol
  local asked = client ~= "openai" or (type(j.stream_options) == "table" and j.stream_options.include_usage == true)
  local body
  local e = state.of(ctx)
  if cp and cp.hub and up.request_from_hub_raw and j == e.fields and e.json == nil then
    -- A hub request of the common shape, translated as the client's text
    -- (nil: anything else, for the general translator below).
    body = up.request_from_hub_raw(request.get_body(), upstream_model, provider.request_opts)
  end
  if not body then
    j = whole(ctx, j)
    local oreq = j
    if cp and not cp.hub then oreq = cp.request_to_hub(j) end
    oreq.model = upstream_model
    local ubody, err = up.request_from_hub(oreq, provider.request_opts)
    if not ubody then return errors.response(err.status, "invalid_request", err.message) end
    body = json.encode(ubody)
  end
  local path = provider:path("chat/completions", upstream_model, stream)
  local x = reply.new(ctx, { client = client, upstream = fmt, stream = stream, model = upstream_model,
                             include_usage = asked, prices = conf.prices })
  if stream then return proxy_through(provider, path, body, FILTER_HEADERS + FILTER_BODY) end
  return answer_whole(ctx, cp or client, up, provider, path, body, upstream_model, x)
end

return M

// anthropic.mjs -- drive aigw's /v1/messages with the official
// `@anthropic-ai/sdk`, as an application would: only baseURL (the gateway's
// root, without /v1) and apiKey (sent as x-api-key) point at the gateway.
// Steps and output: see common.mjs. Run by tests/integration/test_sdk_anthropic.py.
import Anthropic from '@anthropic-ai/sdk';
import { describeError, env, headersOf, runPlan } from './common.mjs';

function client(step) {
  return new Anthropic({
    baseURL: env('AIGW_SDK_BASE_URL'),
    apiKey: step.api_key ?? env('AIGW_SDK_API_KEY'),
    authToken: null,
    maxRetries: 0,
    timeout: step.timeout_ms ?? 10000,
    defaultHeaders: step.default_headers ?? {},
  });
}

const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'Current weather in a city',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string' } },
    required: ['city'],
  },
};

function params(step) {
  const p = {
    model: step.model,
    max_tokens: step.max_tokens ?? 256,
    messages: [{ role: 'user', content: step.content ?? 'Say hello.' }],
  };
  if (step.system) p.system = step.system;
  if (step.tools) p.tools = [WEATHER_TOOL];
  return p;
}

function requestOptions(step) {
  return step.headers ? { headers: step.headers } : {};
}

function summarizeMessage(m) {
  const content = m.content || [];
  return {
    id: m.id,
    type: m.type,
    role: m.role,
    model: m.model,
    block_types: content.map((b) => b.type),
    text: content.filter((b) => b.type === 'text').map((b) => b.text).join(''),
    tool_uses: content.filter((b) => b.type === 'tool_use')
      .map((b) => ({ id: b.id, name: b.name, input: b.input })),
    stop_reason: m.stop_reason ?? null,
    stop_sequence: m.stop_sequence ?? null,
    usage: m.usage ?? null,
  };
}

// One event of a raw Messages stream into the summary stream_events returns.
function readEvent(out, ev) {
  out.events.push(ev.type);
  if (ev.type === 'message_start') {
    out.start_usage = ev.message.usage ?? null;
    out.start_message = { id: ev.message.id, role: ev.message.role, model: ev.message.model,
                          content: ev.message.content, type: ev.message.type };
  } else if (ev.type === 'content_block_start') {
    out.block_types.push(ev.content_block.type);
    out.block_indexes.push(ev.index);
  } else if (ev.type === 'content_block_delta') {
    out.delta_types.push(ev.delta.type);
    if (ev.delta.type === 'text_delta') out.text += ev.delta.text;
    if (ev.delta.type === 'input_json_delta') out.partial_json += ev.delta.partial_json;
  } else if (ev.type === 'message_delta') {
    out.delta_usage = ev.usage ?? null;
    out.stop_reason = ev.delta.stop_reason ?? null;
  }
}

const ops = {
  async create(step) {
    const { data, response } = await client(step).messages
      .create(params(step), requestOptions(step)).withResponse();
    const h = headersOf(response);
    return { ...summarizeMessage(data), status: response.status, request_id: h['x-request-id'] ?? null };
  },

  // The SDK's stream helper: text events and the assembled final message.
  async stream_final(step) {
    const s = client(step).messages.stream(params(step), requestOptions(step));
    let deltas = '';
    s.on('text', (t) => { deltas += t; });
    const final = await s.finalMessage();
    return { deltas, ...summarizeMessage(final) };
  },

  // The raw event sequence of `stream: true`. step.catch_stream_error: an error
  // thrown mid-stream is returned as stream_error, with what arrived before it.
  async stream_events(step) {
    const { data, response } = await client(step).messages
      .create({ ...params(step), stream: true }, requestOptions(step)).withResponse();
    const h = headersOf(response);
    const out = {
      status: response.status,
      content_type: h['content-type'] ?? null,
      request_id: h['x-request-id'] ?? null,
      events: [], delta_types: [], block_types: [], text: '', partial_json: '',
      start_usage: null, start_message: null, delta_usage: null, stop_reason: null,
      block_indexes: [], stream_error: null,
    };
    try {
      for await (const ev of data) readEvent(out, ev);
    } catch (e) {
      if (!step.catch_stream_error) throw e;
      out.stream_error = describeError(e);
    }
    return out;
  },

  // A turn that should use get_weather; with step.second_turn, answer it with
  // a tool_result block and report the model's reply too. step.stream: the
  // first turn goes through messages.stream(...).finalMessage().
  async tools(step) {
    const c = client(step);
    const p = params({ ...step, tools: true, content: step.content ?? 'What is the weather in Paris?' });
    const first = step.stream
      ? await c.messages.stream(p, requestOptions(step)).finalMessage()
      : await c.messages.create(p, requestOptions(step));
    const out = { first: summarizeMessage(first) };
    if (step.second_turn) {
      const results = first.content.filter((b) => b.type === 'tool_use').map((b) => ({
        type: 'tool_result', tool_use_id: b.id, content: '{"temperature_c":21,"sky":"clear"}',
      }));
      const second = await c.messages.create({
        ...p,
        messages: [...p.messages, { role: 'assistant', content: first.content },
                   { role: 'user', content: results }],
      }, requestOptions(step));
      out.second = summarizeMessage(second);
    }
    return out;
  },

  async count_tokens(step) {
    const p = params(step);
    delete p.max_tokens;
    const r = await client(step).messages.countTokens(p, requestOptions(step));
    return { input_tokens: r.input_tokens };
  },
};

await runPlan(ops);

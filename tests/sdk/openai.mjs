// openai.mjs -- drive aigw with the official `openai` SDK, as an application
// would: only baseURL and apiKey point at the gateway. Steps and output: see
// common.mjs. Run by tests/integration/test_sdk_openai.py.
import OpenAI from 'openai';
import { describeError, env, headersOf, runPlan } from './common.mjs';

function client(step) {
  return new OpenAI({
    baseURL: env('AIGW_SDK_BASE_URL'),
    apiKey: step.api_key ?? env('AIGW_SDK_API_KEY'),
    maxRetries: 0,
    timeout: step.timeout_ms ?? 10000,
    defaultHeaders: step.default_headers ?? {},
  });
}

function messages(step) {
  const m = [];
  if (step.system) m.push({ role: 'system', content: step.system });
  m.push({ role: 'user', content: step.content ?? 'Say hello.' });
  return m;
}

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
      additionalProperties: false,
    },
  },
};

function requestOptions(step) {
  return step.headers ? { headers: step.headers } : {};
}

function summarizeCompletion(c) {
  const ch = (c.choices || [])[0] || {};
  const msg = ch.message || {};
  return {
    id: c.id,
    object: c.object,
    model: c.model,
    n_choices: (c.choices || []).length,
    role: msg.role ?? null,
    content: msg.content ?? null,
    tool_calls: msg.tool_calls ?? null,
    finish_reason: ch.finish_reason ?? null,
    usage: c.usage ?? null,
  };
}

// catchError: an error thrown mid-stream is returned as stream_error, with
// what arrived before it, instead of failing the step.
async function readStream(stream, catchError) {
  const out = {
    chunks: 0, objects: [], ids: [], text: '', role: null, finish_reason: null,
    usage_chunks: 0, last_usage: null, last_chunk_usage: null, last_has_choices: null,
    tool_calls: {}, stream_error: null,
  };
  try {
    for await (const chunk of stream) readChunk(out, chunk);
  } catch (e) {
    if (!catchError) throw e;
    out.stream_error = describeError(e);
  }
  out.tool_calls = Object.values(out.tool_calls);
  return out;
}

function readChunk(out, chunk) {
  out.chunks += 1;
  if (!out.objects.includes(chunk.object)) out.objects.push(chunk.object);
  if (!out.ids.includes(chunk.id)) out.ids.push(chunk.id);
  if (chunk.usage) {
    out.usage_chunks += 1;
    out.last_usage = chunk.usage;
  }
  out.last_chunk_usage = chunk.usage ?? null;
  out.last_has_choices = (chunk.choices || []).length > 0;
  for (const ch of chunk.choices || []) {
    const d = ch.delta || {};
    if (d.role) out.role = d.role;
    if (d.content) out.text += d.content;
    if (ch.finish_reason) out.finish_reason = ch.finish_reason;
    for (const tc of d.tool_calls || []) {
      const slot = out.tool_calls[tc.index] ??= { id: null, type: null, name: '', arguments: '' };
      if (tc.id) slot.id = tc.id;
      if (tc.type) slot.type = tc.type;
      if (tc.function?.name) slot.name += tc.function.name;
      if (tc.function?.arguments) slot.arguments += tc.function.arguments;
    }
  }
}

const ops = {
  async chat(step) {
    const body = { model: step.model, messages: messages(step) };
    if (step.max_tokens) body.max_tokens = step.max_tokens;
    const { data, response } = await client(step).chat.completions
      .create(body, requestOptions(step)).withResponse();
    const h = headersOf(response);
    return { ...summarizeCompletion(data), status: response.status, request_id: h['x-request-id'] ?? null };
  },

  async stream(step) {
    const body = { model: step.model, messages: messages(step), stream: true };
    if (step.include_usage) body.stream_options = { include_usage: true };
    if (step.tools) body.tools = [WEATHER_TOOL];
    const { data, response } = await client(step).chat.completions
      .create(body, requestOptions(step)).withResponse();
    const h = headersOf(response);
    return {
      ...(await readStream(data, step.catch_stream_error)),
      status: response.status,
      content_type: h['content-type'] ?? null,
      request_id: h['x-request-id'] ?? null,
    };
  },

  // The SDK's streaming helper: events plus the assembled final completion.
  async stream_helper(step) {
    const runner = client(step).chat.completions.stream(
      { model: step.model, messages: messages(step), stream_options: { include_usage: true } },
      requestOptions(step));
    let deltas = '';
    runner.on('content', (delta) => { deltas += delta; });
    const final = await runner.finalChatCompletion();
    return { deltas, ...summarizeCompletion(final) };
  },

  // One turn that should call get_weather; with step.second_turn, answer the call
  // with a tool message and report the model's reply too.
  async tools(step) {
    const c = client(step);
    const msgs = [{ role: 'user', content: step.content ?? 'What is the weather in Paris?' }];
    const body = { model: step.model, messages: msgs, tools: [WEATHER_TOOL] };
    if (step.tool_choice) body.tool_choice = step.tool_choice;
    const first = await c.chat.completions.create(body, requestOptions(step));
    const out = { first: summarizeCompletion(first) };
    if (step.second_turn) {
      const msg = first.choices[0].message;
      const followUp = [...msgs, msg];
      for (const tc of msg.tool_calls || []) {
        followUp.push({ role: 'tool', tool_call_id: tc.id, content: '{"temperature_c":21,"sky":"clear"}' });
      }
      const second = await c.chat.completions.create(
        { model: step.model, messages: followUp, tools: [WEATHER_TOOL] }, requestOptions(step));
      out.second = summarizeCompletion(second);
    }
    return out;
  },

  async embeddings(step) {
    const body = { model: step.model, input: step.input ?? ['first text', 'second text'] };
    if (step.encoding_format) body.encoding_format = step.encoding_format;
    const r = await client(step).embeddings.create(body, requestOptions(step));
    return {
      object: r.object,
      model: r.model,
      n: (r.data || []).length,
      items: (r.data || []).map((d) => ({
        object: d.object,
        index: d.index,
        is_array: Array.isArray(d.embedding) || ArrayBuffer.isView(d.embedding),
        dims: d.embedding ? d.embedding.length : null,
        first: d.embedding ? Number(d.embedding[0]) : null,
      })),
      usage: r.usage ?? null,
    };
  },

  async models_list(step) {
    const ids = [];
    const objects = [];
    for await (const m of client(step).models.list(requestOptions(step))) {
      ids.push(m.id);
      objects.push(m.object);
    }
    return { ids, objects };
  },

  async models_retrieve(step) {
    const m = await client(step).models.retrieve(step.id, requestOptions(step));
    return { id: m.id, object: m.object, owned_by: m.owned_by ?? null };
  },
};

await runPlan(ops);

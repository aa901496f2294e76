// common.mjs -- what the SDK case runners share: reading the plan, describing
// an error, printing the one result line.
//
// A runner is started as `node <runner>.mjs` with:
//   AIGW_SDK_BASE_URL  the base URL handed to the SDK client
//   AIGW_SDK_API_KEY   the key handed to the SDK client
//   AIGW_SDK_PLAN      JSON list of steps: {"op": NAME, ...params}
// It runs the steps one after another and prints one line to stdout:
//   {"results": [ {"ok": true, ...} | {"ok": false, "error": {...}} , ...]}
// An exception thrown by a step is recorded as that step's error; the next
// step still runs. Anything else the runner prints goes to stderr.

export function env(name) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    throw new Error(`${name} is not set`);
  }
  return v;
}

// The class names of an error, most derived first: ["RateLimitError", "APIError", ...].
export function classChain(e) {
  const names = [];
  for (let p = Object.getPrototypeOf(e); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    const c = p.constructor;
    const n = (c && (Object.prototype.hasOwnProperty.call(c, '_errorName') ? c._errorName : c.name)) || '?';
    if (!names.includes(n)) names.push(n);
  }
  return names;
}

function headersObject(h) {
  if (!h) return null;
  const out = {};
  if (typeof h.forEach === 'function') {
    h.forEach((v, k) => { out[k.toLowerCase()] = v; });
  } else {
    for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  }
  return out;
}

export function describeError(e) {
  return {
    class: classChain(e)[0],
    chain: classChain(e),
    message: String(e && e.message),
    status: e.status ?? null,
    code: e.code ?? null,
    type: e.type ?? null,
    param: e.param ?? null,
    request_id: e.requestID ?? e.request_id ?? null,
    headers: headersObject(e.headers),
    body: e.error ?? null,
  };
}

export function headersOf(response) {
  return headersObject(response && response.headers);
}

export async function runPlan(ops) {
  const plan = JSON.parse(env('AIGW_SDK_PLAN'));
  const results = [];
  for (const step of plan) {
    const fn = ops[step.op];
    if (!fn) {
      results.push({ ok: false, op: step.op, error: { class: 'UnknownOp', message: `no op ${step.op}` } });
      continue;
    }
    const t0 = Date.now();
    try {
      const r = await fn(step);
      results.push({ ok: true, op: step.op, ms: Date.now() - t0, ...r });
    } catch (e) {
      results.push({ ok: false, op: step.op, ms: Date.now() - t0, error: describeError(e) });
    }
  }
  process.stdout.write(JSON.stringify({ results }) + '\n');
}

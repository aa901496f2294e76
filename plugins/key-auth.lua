-- key-auth -- gateway keys: `Authorization: Bearer <key>` or `x-api-key`.
--
-- Keys come from the config's api_keys (AIGW_API_KEYS in the default
-- config). The presented key is compared with every configured key, each
-- comparison in constant time (CRYPTO_memcmp) and all of them always done,
-- so neither the match nor its position leaks through timing; only the
-- presented key's length could. With no keys configured, only loopback
-- clients are served. These keys open the API only: the admin listener's
-- requests never reach this plugin (aigw.engine.admin decides them, with
-- admin_keys, before any plugin runs).

local aigw = require "aigw"

local plugin = {
  name = "key-auth",
  priority = 2500,
  jit = true,   -- every loop is bounded by the config or the input
  schema = {},
}

function plugin.init(conf, global)
  conf.keys = {}
  for i, key in ipairs(global.api_keys) do conf.keys[i] = key end
end

local function presented_key()
  local auth = aigw.request.get_header("authorization")
  if auth then
    local key = auth:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(.-)%s*$")
    if key and key ~= "" then return key end
  end
  local key = aigw.request.get_header("x-api-key")
  if key and key ~= "" then return key end
  return nil
end

function plugin.access(conf, ctx)
  local keys = conf.keys
  local nkeys = #keys
  if nkeys == 0 then
    if aigw.request.is_loopback() then return end
    return aigw.errors.response(403, "forbidden",
      "this gateway has no api keys configured and serves loopback clients only")
  end
  local key = presented_key()
  if not key then
    return aigw.errors.response(401, "missing_api_key",
      "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
      'WWW-Authenticate: Bearer realm="aigw"\r\n')
  end
  local found = false
  local equal = aigw.crypto.equal
  for i = 1, nkeys do
    if equal(key, keys[i]) then found = i end
  end
  if not found then
    return aigw.errors.response(401, "invalid_api_key", "invalid API key",
      'WWW-Authenticate: Bearer realm="aigw"\r\n')
  end
  -- Which key matched (its position in api_keys), never the key itself.
  ctx.consumer = found
end

return plugin

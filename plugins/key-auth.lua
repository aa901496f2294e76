-- key-auth -- gateway keys: `Authorization: Bearer <key>` or `x-api-key`.
--
-- Keys come from the config's api_keys (AIGW_API_KEYS in the default
-- config). Each presented key is hashed and compared with every configured
-- key's hash in constant time, so neither the match nor its position leaks
-- through timing. With no keys configured, only loopback clients are served.

local aigw = require "aigw"

local plugin = {
  name = "key-auth",
  priority = 2500,
  schema = {},
}

function plugin.init(conf, global)
  conf.digests = {}
  for i, key in ipairs(global.api_keys) do conf.digests[i] = aigw.crypto.sha256(key) end
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
  local digests = conf.digests
  if #digests == 0 then
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
  local digest = aigw.crypto.sha256(key)
  local found = false
  for i = 1, #digests do
    if aigw.crypto.equal(digest, digests[i]) then found = true end
  end
  if not found then
    return aigw.errors.response(401, "invalid_api_key", "invalid API key",
      'WWW-Authenticate: Bearer realm="aigw"\r\n')
  end
  ctx.consumer_key_digest = digest
end

return plugin

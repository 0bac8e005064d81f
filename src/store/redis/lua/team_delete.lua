-- Deletes a team unless a live key still belongs to it, in one step (no key can join it in
-- between). KEYS[1]: teams; KEYS[2]: keys; KEYS[3]: the version hash. ARGV: the team's id,
-- the channel. Returns JSON: {"deleted": record} | {"members": [ids]} | {}.
local team = redis.call('HGET', KEYS[1], ARGV[1])
if not team then return '{}' end
local members = {}
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local ok, key = pcall(cjson.decode, v)
  if ok and key.team == ARGV[1] and (key.revoked_at == nil or key.revoked_at == cjson.null) then
    members[#members + 1] = key.id
  end
end
if #members > 0 then return cjson.encode({members = members}) end
redis.call('HDEL', KEYS[1], ARGV[1])
local version = redis.call('HINCRBY', KEYS[3], 'teams', 1)
redis.call('PUBLISH', ARGV[2], 'teams:' .. version)
return '{"deleted":' .. team .. '}'

-- Removes the entries whose key starts with ARGV[1] (every entry: the cache's own prefix), or,
-- with ARGV[2] set, those expired by then (unix seconds). KEYS[1]: the index. Returns how many.
local removed = 0
local members
if ARGV[2] ~= '' then
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
else
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
end
local prefix = ARGV[1]
for _, m in ipairs(members) do
  if string.sub(m, 1, #prefix) == prefix then
    redis.call('DEL', m)
    redis.call('ZREM', KEYS[1], m)
    removed = removed + 1
  end
end
return removed

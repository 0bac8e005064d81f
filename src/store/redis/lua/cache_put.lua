-- Stores a reply with its Redis TTL and keeps the fleet's cache within its bound: the entries
-- that expire first make room. KEYS[1]: the entry; KEYS[2]: the index (entry -> expiry).
-- ARGV: the reply, its expiry (unix seconds), the most entries, now (unix seconds).
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
-- Entries whose time has come are gone from Redis already; only the index still names them.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local victims = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #victims, 2 do redis.call('DEL', victims[i]) end
end
return 1

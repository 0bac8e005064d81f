-- Reads an entry live at ARGV[1] (unix seconds) and counts a hit or a miss for the fleet.
-- KEYS[1]: the entry; KEYS[2]: the index (entry -> expiry); KEYS[3]: the counts.
local expiry = tonumber(redis.call('ZSCORE', KEYS[2], KEYS[1]) or '0')
local v = false
if expiry > tonumber(ARGV[1]) then v = redis.call('GET', KEYS[1]) end
if v then
  redis.call('HINCRBY', KEYS[3], 'hits', 1)
else
  redis.call('HINCRBY', KEYS[3], 'misses', 1)
end
return v

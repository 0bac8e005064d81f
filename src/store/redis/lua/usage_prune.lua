-- Drops the hourly usage rows of hours before ARGV[2] (unix seconds). KEYS[1]: the hours
-- that have rows. ARGV[1]: the prefix of hourly hashes. Returns how many rows went.
local removed = 0
for _, hour in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])) do
  local hash = ARGV[1] .. hour
  for _, field in ipairs(redis.call('HKEYS', hash)) do
    if string.sub(field, -9) == '\30requests' then removed = removed + 1 end
  end
  redis.call('DEL', hash)
  redis.call('ZREM', KEYS[1], hour)
end
return removed

-- Gives back what expired leases hold (a gateway that died with requests in flight): their
-- in-flight slots and budget reservations; admitted requests stay counted. KEYS[1]: the
-- leases sorted set. ARGV: now (unix ms), the most to reap at once. Returns how many.
local function int(x) return string.format('%d', x) end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, name in ipairs(expired) do
  local lease = redis.call('GET', name)
  if lease then
    for _, u in ipairs(cjson.decode(lease)) do
      local key, field, amount, when = u[1], u[2], u[3], u[4]
      if when == 'a' then
        if field == '' then
          local v = tonumber(redis.call('GET', key) or '0')
          if v > 0 then redis.call('DECRBY', key, int(math.min(v, amount))) end
        elseif redis.call('EXISTS', key) == 1 then
          local v = tonumber(redis.call('HGET', key, field) or '0')
          if v > 0 then redis.call('HINCRBY', key, field, int(-math.min(v, amount))) end
        end
      end
    end
    redis.call('DEL', name)
  end
  redis.call('ZREM', KEYS[1], name)
end
return #expired

-- Gives back what expired leases hold (a gateway that died with requests in flight): their
-- in-flight slots and budget reservations; admitted requests stay counted. KEYS[1]: the
-- leases. ARGV: now (unix ms), the most to reap at once. Returns how many.
-- A lease's member is its id, 0x1c, then its holdings separated by 0x1e, each the counter's
-- key, field, amount and when it is given back (a: always; r: on release only) separated by
-- 0x1d.
local function int(x) return string.format('%d', x) end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(expired) do
  local at = string.find(member, '\28', 1, true)
  if at then
    for holding in string.gmatch(string.sub(member, at + 1), '[^\30]+') do
      local parts = {}
      for part in string.gmatch(holding .. '\29', '([^\29]*)\29') do parts[#parts + 1] = part end
      local key, field, amount, when = parts[1], parts[2], tonumber(parts[3]), parts[4]
      if key and amount and when == 'a' then
        if field == '' then
          local v = tonumber(redis.call('GET', key) or '0')
          if v > 0 then redis.call('DECRBY', key, int(math.min(v, amount))) end
        elseif redis.call('EXISTS', key) == 1 then
          local v = tonumber(redis.call('HGET', key, field) or '0')
          if v > 0 then redis.call('HINCRBY', key, field, int(-math.min(v, amount))) end
        end
      end
    end
  end
  redis.call('ZREM', KEYS[1], member)
end
return #expired

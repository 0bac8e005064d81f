-- Ends a lease (settle or release) and charges what the request used. KEYS[1]: the leases
-- sorted set; KEYS[2]: the lease; KEYS[3..]: counters to charge. ARGV: mode (settle |
-- release), then per counter to charge: amount and when it expires (unix seconds, 0: never).
-- A lease already gone (given back by the reaper after it expired) is not given back twice.
-- Returns each charged counter's use after the charge.
local function int(x) return string.format('%d', x) end
local lease = redis.call('GET', KEYS[2])
if lease then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], KEYS[2])
  for _, u in ipairs(cjson.decode(lease)) do
    local key, field, amount, when = u[1], u[2], u[3], u[4]
    if when == 'a' or ARGV[1] == 'release' then
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
local out = {}
local m = #KEYS - 2
for j = 1, m do
  local key = KEYS[2 + j]
  out[j] = redis.call('HINCRBY', key, 'u', ARGV[2 * j])
  local expire_at = tonumber(ARGV[2 * j + 1])
  if expire_at > 0 then redis.call('EXPIREAT', key, ARGV[2 * j + 1]) end
end
return out

-- Ends a lease (settle or release) and charges what the request used. KEYS[1]: the leases;
-- KEYS[2..u+1]: the counters the lease holds; KEYS[u+2..]: counters to charge. ARGV: mode
-- (settle | release), the lease's member, u, then per held counter: field ('' for an
-- in-flight count, `u` for requests, `r` for a reservation), amount, and when it is given back
-- (a: always; r: on release only), then per counter to charge: amount and when it expires
-- (unix seconds, 0: never). A lease already gone (given back by the reaper after it expired)
-- is not given back twice. Returns each charged counter's use after the charge.
-- Never below zero, and never recreating a counter whose window has gone.
local function give_back(key, field, amount)
  if field == '' then
    if redis.call('DECRBY', key, amount) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  elseif redis.call('HEXISTS', key, field) == 1 then
    if redis.call('HINCRBY', key, field, -amount) < 0 then redis.call('HSET', key, field, 0) end
  end
end
local u = tonumber(ARGV[3])
if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
  for j = 1, u do
    local base = 3 + (j - 1) * 3
    if ARGV[base + 3] == 'a' or ARGV[1] == 'release' then
      give_back(KEYS[1 + j], ARGV[base + 1], ARGV[base + 2])
    end
  end
end
local out = {}
local base = 3 + u * 3
for j = 1, #KEYS - 1 - u do
  local key = KEYS[1 + u + j]
  local amount = ARGV[base + 2 * j - 1]
  out[j] = redis.call('HINCRBY', key, 'u', amount)
  -- The counter was just made (a new window since admission): it gets its expiry.
  local expire_at = ARGV[base + 2 * j]
  if expire_at ~= '0' and out[j] == tonumber(amount) and redis.call('HLEN', key) == 1 then
    redis.call('EXPIREAT', key, expire_at)
  end
end
return out

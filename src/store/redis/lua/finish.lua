-- Ends leases (settle or release) and charges what their requests used: many at once, so the
-- fleet's settlements cost one script call per batch, not per request. KEYS[1]: the leases;
-- then per lease, the counters it holds followed by the counters to charge. ARGV: how many
-- leases, then per lease: mode (settle | release), its member, how many counters it holds (u),
-- how many to charge (c), then per held counter: field ('' for an in-flight count, `u` for
-- requests, `r` for a reservation), amount, and when it is given back (a: always; r: on
-- release only), then per counter to charge: amount and when it expires (unix seconds, 0:
-- never). A lease already gone (given back by the reaper after it expired) is not given back
-- twice. Returns every charged counter's use after its charge, in order.
-- Never below zero, and never recreating a counter whose window has gone.
local function give_back(key, field, amount)
  if field == '' then
    if redis.call('DECRBY', key, amount) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  elseif redis.call('HEXISTS', key, field) == 1 then
    if redis.call('HINCRBY', key, field, -amount) < 0 then redis.call('HSET', key, field, 0) end
  end
end
local out = {}
local k, a = 2, 2
for _ = 1, tonumber(ARGV[1]) do
  local mode, member, u, c = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  local live = redis.call('ZREM', KEYS[1], member) == 1
  for _ = 1, u do
    if live and (ARGV[a + 2] == 'a' or mode == 'release') then
      give_back(KEYS[k], ARGV[a], ARGV[a + 1])
    end
    k, a = k + 1, a + 3
  end
  for _ = 1, c do
    local key, amount, expire_at = KEYS[k], ARGV[a], ARGV[a + 1]
    local after = redis.call('HINCRBY', key, 'u', amount)
    -- The counter was just made (a new window since admission): it gets its expiry.
    if expire_at ~= '0' and after == tonumber(amount) and redis.call('HLEN', key) == 1 then
      redis.call('EXPIREAT', key, expire_at)
    end
    out[#out + 1] = after
    k, a = k + 1, a + 2
  end
end
return out

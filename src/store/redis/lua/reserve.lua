-- Admits one request against every limit, all or nothing, and records what it holds as a
-- lease. KEYS[1..n]: each limit's counter (a hash `u` used / `r` reserved for a window, a
-- plain integer of requests in flight for a parallel limit); KEYS[n+1]: the leases, a sorted
-- set by expiry whose members say what each lease holds (see reap.lua). ARGV: n, the lease's
-- expiry (unix ms), the lease's member, then per limit: kind (r requests, t tokens, u
-- micro-USD, p parallel), max, amount, and when the counter expires (unix seconds, 0: never).
-- Returns {0, i, taken} when limit i refuses (taken = used + reserved), else {1, taken after
-- admission per limit...}.
local function int(x) return string.format('%d', x) end
local n = tonumber(ARGV[1])
local taken = {}
local fresh = {}
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local max = tonumber(ARGV[base + 2])
  local amount = tonumber(ARGV[base + 3])
  local t
  local v
  if kind == 'p' then
    v = redis.call('GET', KEYS[i])
    t = tonumber(v or '0')
  else
    local h = redis.call('HMGET', KEYS[i], 'u', 'r')
    v = h[1] or h[2]
    t = tonumber(h[1] or '0') + tonumber(h[2] or '0')
  end
  if not (t < max and t + amount <= max) then
    return {0, i, int(t)}
  end
  taken[i] = t
  -- A counter seen for the first time gets its expiry; one that exists has it already.
  fresh[i] = not v
end
local out = {1}
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local amount = ARGV[base + 3]
  local expire_at = ARGV[base + 4]
  if kind == 'p' then
    redis.call('INCRBY', KEYS[i], amount)
  elseif kind == 'r' then
    redis.call('HINCRBY', KEYS[i], 'u', amount)
  else
    redis.call('HINCRBY', KEYS[i], 'r', amount)
  end
  if expire_at ~= '0' and (fresh[i] or kind == 'p') then
    redis.call('EXPIREAT', KEYS[i], expire_at)
  end
  out[#out + 1] = int(taken[i] + tonumber(amount))
end
redis.call('ZADD', KEYS[n + 1], ARGV[2], ARGV[3])
return out

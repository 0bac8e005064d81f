-- Writes a batch of request log entries and adds them to usage, all or nothing; a batch
-- already written (its marker is there) is left as it is. KEYS[1]: the batch's marker;
-- KEYS[2]: the log (members sorted by name: write time, sequence, instance); KEYS[3]: the
-- entries by member; KEYS[4]: members by request id; KEYS[5]: the hours that have usage rows;
-- KEYS[6]: keys' all-time figures. ARGV: the marker's TTL, the prefix of hourly usage hashes,
-- then the entries (count; member, request id, JSON each), the rows (count; hour, dimensions,
-- thirty totals each), the keys (count; id, thirty totals, last use each). The totals come in
-- the order of `names` (the Rust side's `FIGURES`): ten sums, then the ten buckets of the
-- latency histogram (lat0..lat9) and of time to first token (ttft0..ttft9).
-- Returns 1 when written, 0 when the batch was there already.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local names = {'requests', 'errors', 'cached', 'prompt_tokens', 'completion_tokens',
  'total_tokens', 'cost_usd', 'estimated', 'cached_tokens', 'cache_write_tokens'}
for b = 0, 9 do names[#names + 1] = 'lat' .. b end
for b = 0, 9 do names[#names + 1] = 'ttft' .. b end
local figures = #names
local function add(hash, field, f, v)
  if v == '0' then return end
  if names[f] == 'cost_usd' then
    redis.call('HINCRBYFLOAT', hash, field .. '\30' .. names[f], v)
  else
    redis.call('HINCRBY', hash, field .. '\30' .. names[f], v)
  end
end
local i = 3
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZADD', KEYS[2], 0, ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
  redis.call('HSET', KEYS[4], ARGV[i + 1], ARGV[i])
  i = i + 3
end
local rows = tonumber(ARGV[i]); i = i + 1
for _ = 1, rows do
  local hour, dims = ARGV[i], ARGV[i + 1]
  for f = 1, figures do add(ARGV[2] .. hour, dims, f, ARGV[i + 1 + f]) end
  redis.call('ZADD', KEYS[5], hour, hour)
  i = i + 2 + figures
end
local keys = tonumber(ARGV[i]); i = i + 1
for _ = 1, keys do
  local id = ARGV[i]
  for f = 1, figures do add(KEYS[6], id, f, ARGV[i + f]) end
  local last = tonumber(ARGV[i + figures + 1])
  local field = id .. '\30last_used_ms'
  if last > tonumber(redis.call('HGET', KEYS[6], field) or '0') then
    redis.call('HSET', KEYS[6], field, ARGV[i + figures + 1])
  end
  i = i + 2 + figures
end
return 1

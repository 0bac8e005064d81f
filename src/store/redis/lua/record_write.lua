-- Writes one record of a hash of records (keys by secret hash, teams by id) if it is still
-- what the writer read: optimistic concurrency between instances. KEYS[1]: the records hash;
-- KEYS[2]: the id index (id -> field; for keys only, else the same as KEYS[1]); KEYS[3]: the
-- version hash. ARGV: id, the field read ('' to create), what it held, the field to write,
-- the record, the version field and the channel to tell the fleet on.
-- Returns 1 when written, 0 when someone else wrote first (read again and retry).
local id, old_field, expected, new_field, record = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if old_field == '' then
  if redis.call('HEXISTS', KEYS[1], new_field) == 1 then return 0 end
else
  if redis.call('HGET', KEYS[1], old_field) ~= expected then return 0 end
  if old_field ~= new_field then redis.call('HDEL', KEYS[1], old_field) end
end
redis.call('HSET', KEYS[1], new_field, record)
if KEYS[2] ~= KEYS[1] then redis.call('HSET', KEYS[2], id, new_field) end
-- The message names the new version: an instance that has it already (the writer, which
-- reloads as it writes) does not read everything again.
local version = redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
redis.call('PUBLISH', ARGV[7], ARGV[6] .. ':' .. version)
return 1

-- load: metadata and the journal from an index, in one round trip.
-- KEYS: meta journal
-- ARGV: start (0-based index of the first journal entry wanted)
-- Returns {record, status, outcome or '', entries}, or nil when the invocation does not exist.
local fields = redis.call('HMGET', KEYS[1], 'rec', 'status', 'outcome')
if not fields[1] then
  return false
end
return {fields[1], fields[2], fields[3] or '', redis.call('LRANGE', KEYS[2], ARGV[1], -1)}

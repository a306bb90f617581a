-- seed: create a root workflow with a journal and workflow data (fork).
-- KEYS: meta journal triggers resolved waiting steps registry data
-- ARGV: record digest workflow_type n_entries entry_1 .. entry_n n_fields field_1 value_1 ..
-- Returns 1 when created, 0 when the id exists.
local meta, journal, triggers, resolved, waiting, steps, registry, data = unpack(KEYS)
local record, digest, workflow_type = unpack(ARGV, 1, 3)
if redis.call('EXISTS', meta) == 1 then
  return 0
end
redis.call('HSET', meta, 'rec', record, 'digest', digest, 'root', '1', 'fp', '')
index_add(meta, workflow_type, now_s())
set_status(meta, 'pending')
local _, id = index_keys(meta)
redis.call('SADD', registry, 'i:' .. id, 'w:' .. id)
local n = tonumber(ARGV[4])
call_chunked('RPUSH', journal, 5, 4 + n)
local fields = tonumber(ARGV[5 + n])
call_chunked('HSET', data, 6 + n, 5 + n + 2 * fields)
return 1

-- commit: apply one pass atomically if the token still holds the lease.
-- KEYS: meta journal resolved waiting lock registry data_1 .. data_n
-- ARGV: token lease_ms status outcome finished retention_s
--       n_entries entry_1 .. entry_n
--       n_waiting step_1 .. step_n
--       then for each data key in KEYS order: n_fields field_1 value_1 .. field_n value_n
--       (outcome is '' for none; finished is '1' when status is a finished status)
-- Returns {ok, rerun}.
local meta, journal, resolved, waiting, lock, registry = unpack(KEYS, 1, 6)
local token, lease_ms, status, outcome, finished, retention_s = unpack(ARGV, 1, 6)

if redis.call('GET', lock) ~= token then
  return {0, 0}
end

local i = 7
local n_entries = tonumber(ARGV[i])
call_chunked('RPUSH', journal, i + 1, i + n_entries)
i = i + n_entries + 1
local n_waiting = tonumber(ARGV[i])
local first_step = i + 1
i = i + n_waiting + 1
local written = {meta, journal, waiting}
for k = 7, #KEYS do
  local n_fields = tonumber(ARGV[i])
  call_chunked('HSET', KEYS[k], i + 1, i + 2 * n_fields)
  redis.call('SADD', registry, KEYS[k])
  written[#written + 1] = KEYS[k]
  i = i + 2 * n_fields + 1
end

if finished == '1' then
  if outcome == '' then
    redis.call('HSET', meta, 'status', status)
    redis.call('HDEL', meta, 'outcome')
  else
    redis.call('HSET', meta, 'status', status, 'outcome', outcome)
  end
  redis.call('DEL', waiting, lock)
  if redis.call('HGET', meta, 'root') == '1' then
    -- The root finished: the whole tree's keys start their retention clock. Registry
    -- members share the root's hash tag, hence this slot, so Redis Cluster accepts keys
    -- that are not in KEYS here. Lock keys are never registered: they expire by themselves.
    for _, key in ipairs(redis.call('SMEMBERS', registry)) do
      redis.call('EXPIRE', key, retention_s)
    end
    redis.call('EXPIRE', registry, retention_s)
  else
    retain(registry, written)
  end
  return {1, 0}
end

-- Steps whose results arrived while the pass ran are not waited on: rerun at once.
redis.call('DEL', waiting)
for k = first_step, first_step + n_waiting - 1 do
  if redis.call('SISMEMBER', resolved, ARGV[k]) == 0 then
    redis.call('SADD', waiting, ARGV[k])
  end
end
retain(registry, written)
if redis.call('SCARD', waiting) == 0 then
  redis.call('PEXPIRE', lock, lease_ms)
  return {1, 1}
end
redis.call('HSET', meta, 'status', 'suspended')
redis.call('DEL', lock)
return {1, 0}

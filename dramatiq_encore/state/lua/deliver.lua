-- deliver: record a trigger once, create the invocation on a start, resolve a step on a
-- result, then grant the replay lease when the invocation can make progress.
-- KEYS: meta journal triggers resolved waiting lock registry child_meta
--       (child_meta is the reporting child's meta on a result, else meta again)
-- ARGV: kind trigger_key record digest root step token lease_ms
--       (record and digest are '' when no record was given; step is '' on a start)
-- Returns {exists, duplicate, status, token, locked, conflict} with token '' when not granted.
local meta, journal, triggers, resolved, waiting, lock, registry, child_meta = unpack(KEYS)
local kind, trigger_key, record, digest, root, step, token, lease_ms = unpack(ARGV)

if redis.call('EXISTS', meta) == 0 then
  if kind ~= 'start' or record == '' then
    return {0, 0, 'pending', '', 0, 0}
  end
  redis.call('HSET', meta, 'rec', record, 'status', 'pending', 'digest', digest, 'root', root)
  -- Registered once, whether or not each key exists yet: retention expires them all.
  redis.call('SADD', registry, meta, journal, triggers, resolved, waiting)
elseif kind == 'start' and record ~= '' and redis.call('HGET', meta, 'digest') ~= digest then
  return {1, 1, redis.call('HGET', meta, 'status'), '', 0, 1}
end

local duplicate = 0
if redis.call('SADD', triggers, trigger_key) == 0 then
  duplicate = 1
else
  -- A step's result is the child's stored outcome, copied once: a second result message
  -- for the same step finds it resolved. Concatenation avoids a cjson round trip, which
  -- would turn large integers into floats.
  local outcome = kind == 'result' and redis.call('HGET', child_meta, 'outcome')
  if outcome and redis.call('SISMEMBER', resolved, step) == 0 then
    redis.call('RPUSH', journal, '{"e":"res","n":' .. step .. ',"o":' .. outcome .. '}')
    redis.call('SADD', resolved, step)
    redis.call('SREM', waiting, step)
  end
  retain(registry, {meta, journal, triggers, resolved})
end

local ok, status = runnable(meta, waiting)
if not ok then
  return {1, duplicate, status, '', 0, 0}
end
if take_lock(meta, lock, token, lease_ms) then
  return {1, duplicate, 'running', token, 0, 0}
end
return {1, duplicate, status, '', 1, 0}

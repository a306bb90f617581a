-- deliver: record a trigger once, create the invocation on a start, resolve a step on a
-- result or a timer, append a signal or a cancel, then grant the replay lease when the
-- invocation can make progress.
-- KEYS: meta journal triggers resolved waiting lock registry child_meta
--       (child_meta is the reporting child's meta on a result, else meta again)
-- ARGV: kind trigger_key record digest root step token lease_ms load_from payload name run
--       (record and digest are '' when no record was given; step is '' unless a result or
--       timer; payload is the step's outcome JSON on a timer or a result (when the message
--       carries it), the journal entry JSON on a
--       signal or cancel, else ''; name is the signal's name, else ''; run is the run of
--       the caller's cached prefix)
-- Returns {exists, duplicate, status, token, locked, conflict} with token '' when not granted;
-- when granted and load_from is given, also {start, record or '', journal[start..]}: the pass
-- that follows needs no separate load. start falls back to 0 (with the record) when the
-- journal is shorter than load_from or its run is another one (continue as new), i.e. the
-- caller's cached prefix belongs to an older run.
local meta, journal, triggers, resolved, waiting, lock, registry, child_meta = unpack(KEYS)
local kind, trigger_key, record, digest, root, step, token, lease_ms, load_from, payload, name, run = unpack(ARGV)

-- Stop waiting on one member; an invocation that waits on any one member (a race) wakes.
local function unwait(member)
  if redis.call('SREM', waiting, member) == 1 and redis.call('HGET', meta, 'wake') == 'any' then
    redis.call('DEL', waiting)
  end
end

-- A step is resolved once: a second result (or a late timer) finds it resolved. Concatenation
-- avoids a cjson round trip, which would turn large integers into floats.
local function resolve(outcome)
  if outcome and redis.call('SISMEMBER', resolved, step) == 0 then
    redis.call('RPUSH', journal, '{"e":"res","n":' .. step .. ',"o":' .. outcome .. '}')
    redis.call('SADD', resolved, step)
    unwait(step)
  end
end

local created = false
if redis.call('EXISTS', meta) == 0 then
  if kind ~= 'start' or record == '' then
    return {0, 0, 'pending', '', 0, 0}
  end
  created = true
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
  if kind == 'result' then
    if payload ~= '' then
      resolve(payload)  -- the outcome the child's message carries
    else
      resolve(redis.call('HGET', child_meta, 'outcome'))  -- the child's stored outcome
    end
  elseif kind == 'timer' then
    resolve(payload)
  elseif (kind == 'signal' or kind == 'cancel') and ACTIVE[redis.call('HGET', meta, 'status')] then
    redis.call('RPUSH', journal, payload)
    if kind == 'cancel' then
      redis.call('DEL', waiting)
    else
      unwait('sig:' .. name)
    end
  end
  retain(registry, {meta, journal, triggers, resolved})
end

local ok, status = runnable(meta, waiting)
if not ok then
  return {1, duplicate, status, '', 0, 0}
end
if take_lock(meta, lock, token, lease_ms) then
  if load_from == '' then
    return {1, duplicate, 'running', token, 0, 0}
  end
  local start = tonumber(load_from)
  if start > redis.call('LLEN', journal) or (redis.call('HGET', meta, 'run') or '0') ~= run then
    start = 0
  end
  -- The record just created from ARGV is the caller's own: not sent back.
  local rec = ''
  if start == 0 and not created then
    rec = redis.call('HGET', meta, 'rec')
  end
  return {1, duplicate, 'running', token, 0, 0, start, rec, redis.call('LRANGE', journal, start, -1)}
end
return {1, duplicate, status, '', 1, 0}

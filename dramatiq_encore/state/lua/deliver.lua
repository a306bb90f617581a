-- deliver: check a trigger against what the invocation recorded, record it once, create the
-- invocation on a start, resolve a step on a result or a timer, append a signal or a cancel,
-- then grant the replay lease when the invocation can make progress.
-- KEYS: meta journal triggers resolved waiting lock registry steps lost rel_meta rel_steps
--       (rel_* are the reporting child's keys on a result, the parent's on a child's start,
--       else the invocation's own again)
-- ARGV: kind trigger_key record digest root step token lease_ms load_from payload name run
--       id fingerprint due limit retention_s workflow_type
--       (record and digest are '' when no record was given; step is the step a result or a
--       timer resolves, or the parent's step on a child's start, else ''; payload is a timer's
--       outcome JSON or a signal's/cancel's journal entry, else ''; name is the signal's name;
--       run is the run of the caller's cached prefix; id is the invocation id; fingerprint is
--       a child start's fingerprint (what the parent's step recorded), else ''; due is the due
--       time a timer message carries; limit is the most signals that may wait unconsumed;
--       workflow_type is the record's task name, which a root enters the workflow index with)
-- Returns {verdict, detail, duplicate, status, token, locked} with token '' when not granted;
-- when granted and load_from is given, also {start, record or '', journal[start..]}: the pass
-- that follows needs no separate load. start falls back to 0 (with the record) when the
-- journal is shorter than load_from or its run is another one (continue as new).
-- Verdicts: ok; unknown (no such invocation; detail 'lost' when the id was marked lost);
-- conflict (a start with other arguments); refused (the trigger contradicts what was
-- recorded: detail says how; nothing is written); early (a child's start before its parent
-- recorded the step, or a result before the child recorded its outcome: try again shortly);
-- due (a timer before its recorded due time, which detail holds); ignored (a message for a
-- finished invocation or an earlier run: nothing is written).
local meta, journal, triggers, resolved, waiting, lock, registry, steps, lost, rel_meta, rel_steps = unpack(KEYS)
local kind, trigger_key, record, digest, root, step, token, lease_ms, load_from, payload, name, run,
  id, fingerprint, due, limit, retention_s, workflow_type = unpack(ARGV)

-- A timer message takes its step out of the timer index whatever the verdict (it is resolved,
-- stale or refused); one that came early puts it back at the recorded due time.
if kind == 'timer' then
  redis.call('ZREM', timer_key(meta), timer_member(id, step, due))
end

local function reply(verdict, detail, duplicate, status)
  return {verdict, detail or '', duplicate or 0, status or 'pending', '', 0}
end

-- The store has no record of an invocation a message names: its state was lost (a flush, an
-- eviction, a restart without persistence). Readers see it; waiters are woken.
local function mark_lost(lost_id, lost_meta, why)
  redis.call('HSET', lost, lost_id, why)
  redis.call('EXPIRE', lost, retention_s)
  redis.call('PUBLISH', lost_meta, 'lost')
  return reply('unknown', 'lost')
end

-- Stop waiting on one member; an invocation that waits on any one member (a race) wakes.
local function unwait(member)
  if redis.call('SREM', waiting, member) == 1 and redis.call('HGET', meta, 'wake') == 'any' then
    redis.call('DEL', waiting)
  end
end

-- A step is resolved once: a second result (or a late timer) finds it resolved. Concatenation
-- avoids a cjson round trip, which would turn large integers into floats.
local function resolve(outcome)
  if redis.call('SISMEMBER', resolved, step) == 0 then
    redis.call('RPUSH', journal, '{"e":"res","n":' .. step .. ',"o":' .. outcome .. ',"t":' .. now_s() .. '}')
    redis.call('SADD', resolved, step)
    unwait(step)
  end
end

-- A child's start counts only for what its parent's step recorded.
local function check_parent()
  if redis.call('EXISTS', rel_meta) == 0 then
    return mark_lost(string.match(id, '^(.*)/%d+$'), rel_meta, 'a child start named it')
  end
  local recorded = redis.call('HGET', rel_steps, step)
  if not recorded then
    if ACTIVE[redis.call('HGET', rel_meta, 'status')] then
      return reply('early')
    end
    return reply('refused', 'its parent finished without recording step ' .. step)
  end
  if recorded ~= 'c:' .. fingerprint then
    return reply('refused', 'its parent recorded another task, arguments or identity at step ' .. step)
  end
  return nil
end

-- The outcome a result or a timer resolves its step with, or a reply that refuses it.
local function step_outcome()
  local recorded = redis.call('HGET', steps, step)
  local first = tonumber(redis.call('HGET', meta, 'first') or '0')
  if tonumber(step) <= first then
    return nil, reply('ignored', 'a step of an earlier run', 0, redis.call('HGET', meta, 'status'))
  end
  if kind == 'result' then
    if not recorded or string.sub(recorded, 1, 2) ~= 'c:' then
      return nil, reply('refused', 'no child task is recorded at step ' .. step)
    end
    local child = redis.call('HMGET', rel_meta, 'fp', 'outcome')
    if not child[1] then
      return nil, reply('early', 'the child has no record yet')
    end
    if child[1] ~= string.sub(recorded, 3) then
      return nil, reply('refused', 'the reporting child is not the one step ' .. step .. ' started')
    end
    if not child[2] then
      return nil, reply('early', 'the child has recorded no outcome')
    end
    return child[2]
  end
  if not recorded or string.sub(recorded, 1, 2) ~= 't:' then
    return nil, reply('refused', 'no timer is recorded at step ' .. step)
  end
  local at = tonumber(string.sub(recorded, 3))
  if tonumber(due) ~= at then
    return nil, reply('refused', 'step ' .. step .. ' is due at ' .. string.sub(recorded, 3) .. ', not ' .. due)
  end
  if now_s() < at - DUE_SLACK_S then
    redis.call('ZADD', timer_key(meta), at, timer_member(id, step, string.sub(recorded, 3)))
    return nil, reply('due', string.sub(recorded, 3))
  end
  return payload
end

local created = false
if redis.call('EXISTS', meta) == 0 then
  if kind ~= 'start' or record == '' then
    if kind == 'result' or kind == 'timer' or kind == 'signal' then
      return mark_lost(id, meta, 'a ' .. kind .. ' message named it')
    end
    return reply('unknown')
  end
  if fingerprint ~= '' then
    local refused = check_parent()
    if refused then
      return refused
    end
  end
  created = true
  redis.call('HSET', meta, 'rec', record, 'digest', digest, 'root', root, 'fp', fingerprint)
  if root == '1' then
    index_add(meta, workflow_type, now_s())
  end
  set_status(meta, 'pending')
  redis.call('HDEL', lost, id)  -- started again after it was marked lost
  -- Registered once, whether or not each key exists yet: retention expires them all.
  redis.call('SADD', registry, 'i:' .. id)
elseif kind == 'start' and record ~= '' then
  if redis.call('HGET', meta, 'digest') ~= digest then
    return {'conflict', '', 1, redis.call('HGET', meta, 'status'), '', 0}
  end
  if redis.call('HGET', meta, 'fp') ~= fingerprint then
    return reply('refused', 'its parent recorded another task or identity at step ' .. step)
  end
end

local status = redis.call('HGET', meta, 'status')
local outcome = nil
if kind ~= 'start' and not ACTIVE[status] then
  return reply('ignored', 'the invocation is ' .. status, 0, status)
end
if (kind == 'result' or kind == 'timer') and redis.call('SISMEMBER', triggers, trigger_key) == 0 then
  local refused
  outcome, refused = step_outcome()
  if refused then
    return refused
  end
end
if kind == 'signal' and redis.call('SISMEMBER', triggers, trigger_key) == 0 then
  local waiting_signals = tonumber(redis.call('HGET', meta, 'sigs') or '0')
  if waiting_signals >= tonumber(limit) then
    return reply('refused', waiting_signals .. ' signals are waiting to be consumed, the limit', 0, status)
  end
end

local duplicate = 0
if redis.call('SADD', triggers, trigger_key) == 0 then
  duplicate = 1
else
  if outcome then
    resolve(outcome)
  elseif kind == 'signal' or kind == 'cancel' then
    redis.call('RPUSH', journal, payload)
    if kind == 'cancel' then
      redis.call('DEL', waiting)
    else
      redis.call('HINCRBY', meta, 'sigs', 1)
      unwait('sig:' .. name)
    end
  end
  retain(registry, {meta, journal, triggers, resolved})
end

local ok
ok, status = runnable(meta, waiting)
if not ok then
  return {'ok', '', duplicate, status, '', 0}
end
if take_lock(meta, lock, token, lease_ms) then
  if load_from == '' then
    return {'ok', '', duplicate, 'running', token, 0}
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
  return {'ok', '', duplicate, 'running', token, 0, start, rec, redis.call('LRANGE', journal, start, -1)}
end
return {'ok', '', duplicate, status, '', 1}

-- commit: apply one pass atomically if the token still holds the lease.
-- KEYS: meta journal resolved waiting lock registry steps data_1 .. data_n
-- ARGV: token lease_ms status outcome finished retention_s wake_any seen reset run empty_only first
--       n_entries entry_1 .. entry_n
--       n_waiting step_1 .. step_n
--       n_signals name_1 .. name_n
--       n_claims step_1 .. step_n
--       n_steps step_1 recorded_1 .. step_n recorded_n
--       then for each data key in KEYS order: n_fields field_1 value_1 .. field_n value_n
--       (outcome is '' for none; finished is '1' when status is a finished status;
--       wake_any is '1' when one resolved member wakes the invocation; seen is the journal
--       length the pass saw, or '' for no check; reset is the next run's record JSON when
--       the invocation continues as new, else '', run that record's run number and first
--       the last step of the run before it; empty_only is '1' for a first pass run before its
--       state was read: it applies only to the empty state of run 0, else it is stale;
--       the steps section holds what the pass's new steps recorded, for deliver.lua to check
--       triggers against: 'c:<fingerprint>' a child task, 't:<due>' a timer, 'w' a signal wait;
--       each claim consumed one waiting signal)
-- Returns {ok, rerun} or, when the pass's entries were appended to its run's journal,
-- {ok, rerun, at} with at their index; {0, 1} means stale: nothing written, the lease is
-- still held.
local meta, journal, resolved, waiting, lock, registry, steps = unpack(KEYS, 1, 7)
local token, lease_ms, status, outcome, finished, retention_s, wake_any, seen, reset, run, empty_only, first =
  unpack(ARGV, 1, 12)

if redis.call('GET', lock) ~= token then
  return {0, 0}
end

if empty_only == '1' and (redis.call('LLEN', journal) > 0 or (redis.call('HGET', meta, 'run') or '0') ~= '0') then
  return {0, 1}
end

local i = 13
local sections = {}
for s = 1, 5 do
  local n = tonumber(ARGV[i])
  if s == 5 then
    n = 2 * n  -- step, recorded pairs
  end
  sections[s] = {i + 1, i + n}
  i = i + n + 1
end
local entries, awaited, signals, claims, recorded = unpack(sections)

-- A step this pass resolved itself (it consumed a signal) was resolved meanwhile by its
-- timer: the pass decided on a stale journal. Write nothing; the caller runs it again.
for k = claims[1], claims[2] do
  if redis.call('SISMEMBER', resolved, ARGV[k]) == 1 then
    return {0, 1}
  end
end
local grew = seen ~= '' and redis.call('LLEN', journal) > tonumber(seen)
if reset ~= '' then
  -- Continue as new: the new run starts from its own journal (entries carry over unconsumed
  -- signals). Whatever arrived during the pass would be lost: run the pass again instead.
  if grew then
    return {0, 1}
  end
  timers_dropped(meta, index_id(meta), steps, resolved)
  redis.call('DEL', journal, resolved, steps)
  -- Unconsumed signals are carried over as this pass's entries.
  redis.call('HSET', meta, 'rec', reset, 'run', run, 'first', first, 'sigs', entries[2] - entries[1] + 1)
end

local at = redis.call('LLEN', journal)  -- where this pass's entries start
call_chunked('RPUSH', journal, entries[1], entries[2])
call_chunked('SADD', resolved, claims[1], claims[2])
call_chunked('HSET', steps, recorded[1], recorded[2])
timers_recorded(meta, index_id(meta), recorded[1], recorded[2])
if reset == '' and claims[2] >= claims[1] then
  redis.call('HINCRBY', meta, 'sigs', claims[1] - claims[2] - 1)
end
local written = {meta, journal, waiting, resolved, steps}
for k = 8, #KEYS do
  local n_fields = tonumber(ARGV[i])
  call_chunked('HSET', KEYS[k], i + 1, i + 2 * n_fields)
  redis.call('SADD', registry, 'w:' .. string.match(KEYS[k], ':wf:(.*):data$'))
  written[#written + 1] = KEYS[k]
  i = i + 2 * n_fields + 1
end

if reset ~= '' then
  redis.call('DEL', waiting)
  redis.call('HDEL', meta, 'wake')
  retain(registry, written)
  redis.call('PEXPIRE', lock, lease_ms)
  return {1, 1}
end

if finished == '1' then
  local now = now_s()
  timers_dropped(meta, index_id(meta), steps, resolved)
  set_status(meta, status)
  if outcome == '' then
    redis.call('HDEL', meta, 'outcome')
  else
    redis.call('HSET', meta, 'outcome', outcome)
  end
  redis.call('HSET', meta, 'done', now)
  redis.call('HDEL', meta, 'wake')
  redis.call('DEL', waiting, lock)
  if redis.call('HGET', meta, 'root') == '1' then
    -- The root finished: the whole tree's keys start their retention clock. Registry
    -- members share the root's hash tag, hence this slot, so Redis Cluster accepts keys
    -- that are not in KEYS here. Lock keys are never registered: they expire by themselves.
    for _, key in ipairs(registered_keys(registry)) do
      redis.call('EXPIRE', key, retention_s)
    end
    redis.call('EXPIRE', registry, retention_s)
    index_finish(meta, status, tonumber(retention_s), now)
    -- Whoever waits for this workflow (Invocation.wait) is subscribed to its meta key's name.
    redis.call('PUBLISH', meta, status)
  else
    retain(registry, written)
  end
  return {1, 0, at}
end

-- Steps whose results arrived while the pass ran are not waited on; a journal that grew
-- (a signal, a cancel) or, when one member suffices, one resolved member: rerun at once.
redis.call('DEL', waiting)
local woken = grew
for k = awaited[1], awaited[2] do
  if redis.call('SISMEMBER', resolved, ARGV[k]) == 0 then
    redis.call('SADD', waiting, ARGV[k])
  elseif wake_any == '1' then
    woken = true
  end
end
for k = signals[1], signals[2] do
  redis.call('SADD', waiting, 'sig:' .. ARGV[k])
end
retain(registry, written)
if woken or redis.call('SCARD', waiting) == 0 then
  redis.call('DEL', waiting)
  redis.call('PEXPIRE', lock, lease_ms)
  return {1, 1, at}
end
if wake_any == '1' then
  redis.call('HSET', meta, 'wake', 'any')
else
  redis.call('HDEL', meta, 'wake')
end
set_status(meta, 'suspended')
redis.call('DEL', lock)
return {1, 0, at}

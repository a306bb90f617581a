-- needs_result: should a finished child's result be sent to this (parent) invocation again?
-- Yes while the parent is active. A pass that the result triggered may have died before its
-- commit, or after it and before sending what it decided (a child resumed its parent in
-- place: no result message is left to redeliver). The re-sent result is then a duplicate
-- trigger: it runs the stalled pass once the lease is free, or repairs what that pass sent.
-- KEYS: meta
-- Returns 1 or 0.
if ACTIVE[redis.call('HGET', KEYS[1], 'status')] then
  return 1
end
return 0

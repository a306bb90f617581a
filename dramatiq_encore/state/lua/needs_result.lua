-- needs_result: should a finished child's result be sent to this (parent) invocation again?
-- Yes while it is active and either still waits for step n, or waits on nothing: a pass that
-- took its lease after the step resolved may have died before its commit (its lease then
-- expires), and no message is left to run it again. A result sent to a parent whose pass is
-- alive is a duplicate trigger: re-sent until the lease is free, then harmless.
-- KEYS: meta resolved waiting
-- ARGV: step
-- Returns 1 or 0.
local meta, resolved, waiting = unpack(KEYS)
if not ACTIVE[redis.call('HGET', meta, 'status')] then
  return 0
end
if redis.call('SISMEMBER', resolved, ARGV[1]) == 0 or redis.call('SCARD', waiting) == 0 then
  return 1
end
return 0

-- is_waiting_on: the invocation is active and step n has not been resolved.
-- KEYS: meta resolved
-- ARGV: step
-- Returns 1 or 0.
if ACTIVE[redis.call('HGET', KEYS[1], 'status')] and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  return 1
end
return 0

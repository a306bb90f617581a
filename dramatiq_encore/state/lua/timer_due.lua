-- timer_due: the due time step n recorded, while the invocation is active, step n is a
-- timer and it has not been resolved.
-- KEYS: meta resolved steps
-- ARGV: step
-- Returns the due time as text, or ''.
if ACTIVE[redis.call('HGET', KEYS[1], 'status')] and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  local recorded = redis.call('HGET', KEYS[3], ARGV[1])
  if recorded and string.sub(recorded, 1, 2) == 't:' then
    return string.sub(recorded, 3)
  end
end
return ''

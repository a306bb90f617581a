-- renew: extend the lease, only if this token still holds it.
-- KEYS: lock
-- ARGV: token lease_ms
-- Returns 1 when renewed, 0 when the lease was lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0

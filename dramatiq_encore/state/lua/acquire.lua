-- acquire: take the replay lease if the invocation is runnable and nobody holds it.
-- KEYS: meta waiting lock
-- ARGV: token lease_ms
-- Returns the token, or nil.
local meta, waiting, lock = unpack(KEYS)
local token, lease_ms = unpack(ARGV)

if redis.call('EXISTS', meta) == 0 or not runnable(meta, waiting) then
  return false
end
if take_lock(meta, lock, token, lease_ms) then
  return token
end
return false

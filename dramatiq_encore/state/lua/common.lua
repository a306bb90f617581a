-- Helpers prepended to every script by RedisState (a script file cannot import another).
-- The ACTIVE table above them is generated from dramatiq_encore.state.models.ACTIVE.
-- Meta hash fields are named in dramatiq_encore/state/keys.py.

-- Lua's unpack() is limited by the C stack (about 8000 values): send long lists in chunks.
-- CHUNK is even, so HSET field/value pairs never straddle two calls.
local CHUNK = 1000

local function call_chunked(command, key, first, last)
  local from = first
  while from <= last do
    local to = math.min(from + CHUNK - 1, last)
    redis.call(command, key, unpack(ARGV, from, to))
    from = to + 1
  end
end

-- Runnable: active and waiting on no unresolved step. Returns the flag and the status.
local function runnable(meta, waiting)
  local status = redis.call('HGET', meta, 'status')
  return ACTIVE[status] == true and redis.call('SCARD', waiting) == 0, status
end

-- Take the replay lease if nobody holds it (an expired lease is gone: PX).
local function take_lock(meta, lock, token, lease_ms)
  if redis.call('SET', lock, token, 'NX', 'PX', lease_ms) then
    redis.call('HSET', meta, 'status', 'running')
    return true
  end
  return false
end

-- The registry gets a TTL when the root finishes. A key written after that (a late child,
-- a set emptied and created again) inherits the remaining retention instead of living forever.
local function retain(registry, keys)
  local ttl = redis.call('PTTL', registry)
  if ttl > 0 then
    for _, key in ipairs(keys) do
      if redis.call('PTTL', key) == -1 then
        redis.call('PEXPIRE', key, ttl)
      end
    end
  end
end

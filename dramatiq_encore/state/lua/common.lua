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

-- The workflow index (see keys.py): root workflows by start time, per status and per type,
-- in the slot of the meta key's hash tag. Its head and the workflow id, from the meta key.
local function index_keys(meta)
  return string.match(meta, '^(.-})') .. ':ix:', string.match(meta, '^.-}:inv:(.*):meta$')
end

-- Move an indexed workflow from status old (nil: none yet) to new; a no-op for invocations
-- the index does not list (children).
local function index_status(meta, old, new)
  if old == new then
    return
  end
  local f = redis.call('HMGET', meta, 'ix', 'at')
  if not f[1] then
    return
  end
  local h, id = index_keys(meta)
  if old then
    redis.call('ZREM', h .. 's:' .. old, id)
    redis.call('ZREM', h .. 'st:' .. old .. ':' .. f[1], id)
  end
  redis.call('ZADD', h .. 's:' .. new, f[2], id)
  redis.call('ZADD', h .. 'st:' .. new .. ':' .. f[1], f[2], id)
end

-- Every status change goes through here, so the index never disagrees with the records.
local function set_status(meta, status)
  local old = redis.call('HGET', meta, 'status')
  redis.call('HSET', meta, 'status', status)
  index_status(meta, old, status)
end

-- Remove a finished workflow from the index (it expired, or its id is used again).
local function index_forget(h, id)
  local fin = redis.call('HGET', h .. 'fin', id)
  if fin then
    local status, kind = string.match(fin, '^([^\n]*)\n(.*)$')
    redis.call('ZREM', h .. 'all', id)
    redis.call('ZREM', h .. 's:' .. status, id)
    redis.call('ZREM', h .. 't:' .. kind, id)
    redis.call('ZREM', h .. 'st:' .. status .. ':' .. kind, id)
    redis.call('HDEL', h .. 'fin', id)
  end
  redis.call('ZREM', h .. 'exp', id)
end

-- Finished workflows whose retention passed leave the index, a few at a time.
local function index_prune(h, now, limit)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', h .. 'exp', '-inf', now, 'LIMIT', 0, limit)) do
    index_forget(h, id)
  end
end

local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- A new root workflow enters the index (its status is added by set_status).
local function index_add(meta, kind, now)
  local h, id = index_keys(meta)
  index_forget(h, id)  -- an id used again after its retention
  local at = math.floor(now * 1000)
  redis.call('HSET', meta, 'ix', kind, 'at', at)
  redis.call('ZADD', h .. 'all', at, id)
  redis.call('ZADD', h .. 't:' .. kind, at, id)
end

-- A root workflow finished: it leaves the index when its retention expires.
local function index_finish(meta, status, retention_s, now)
  local kind = redis.call('HGET', meta, 'ix')
  if not kind then
    return
  end
  local h, id = index_keys(meta)
  redis.call('ZADD', h .. 'exp', now + retention_s, id)
  redis.call('HSET', h .. 'fin', id, status .. '\n' .. kind)
  index_prune(h, now, 4)
end

-- Runnable: active and waiting on no unresolved step. Returns the flag and the status.
local function runnable(meta, waiting)
  local status = redis.call('HGET', meta, 'status')
  return ACTIVE[status] == true and redis.call('SCARD', waiting) == 0, status
end

-- Take the replay lease if nobody holds it (an expired lease is gone: PX).
local function take_lock(meta, lock, token, lease_ms)
  if redis.call('SET', lock, token, 'NX', 'PX', lease_ms) then
    set_status(meta, 'running')
    redis.call('HINCRBY', meta, 'passes', 1)
    return true
  end
  return false
end

-- The timer index (keys.py): every unresolved timer step of the shard's invocations, by due
-- time, member '<invocation id>\31<step>\31<due>', for the workers' poller (poll_timers.lua).
local function index_id(meta)
  return string.match(meta, '^.-}:inv:(.*):meta$')
end

local function timer_key(meta)
  return string.match(meta, '^(.-})') .. ':ix:due'
end

local function timer_member(id, step, due_text)
  return id .. '\31' .. step .. '\31' .. due_text
end

-- Register the timer steps a commit recorded ('t:<due>' entries of its steps section).
local function timers_recorded(meta, id, first, last)
  for k = first, last, 2 do
    local recorded = ARGV[k + 1]
    if string.sub(recorded, 1, 2) == 't:' then
      local due_text = string.sub(recorded, 3)
      redis.call('ZADD', timer_key(meta), tonumber(due_text), timer_member(id, ARGV[k], due_text))
    end
  end
end

-- Forget the unresolved timers of a run that ends (finished, or continued as new).
local function timers_dropped(meta, id, steps, resolved)
  local fields = redis.call('HGETALL', steps)
  for k = 1, #fields, 2 do
    local recorded = fields[k + 1]
    if string.sub(recorded, 1, 2) == 't:' and redis.call('SISMEMBER', resolved, fields[k]) == 0 then
      redis.call('ZREM', timer_key(meta), timer_member(id, fields[k], string.sub(recorded, 3)))
    end
  end
end

-- The registry of a tree (keys.py) names its invocations ('i:<id>') and its workflows' data
-- ('w:<workflow id>'), not every key: the keys of each member, from the registry's shard head.
local INVOCATION_SUFFIXES = {'meta', 'journal', 'triggers', 'resolved', 'waiting', 'steps'}

local function registered_keys(registry)
  local head = string.match(registry, '^(.-})')
  local keys = {}
  for _, member in ipairs(redis.call('SMEMBERS', registry)) do
    local kind, id = string.sub(member, 1, 1), string.sub(member, 3)
    if kind == 'w' then
      keys[#keys + 1] = head .. ':wf:' .. id .. ':data'
    else
      for _, suffix in ipairs(INVOCATION_SUFFIXES) do
        keys[#keys + 1] = head .. ':inv:' .. id .. ':' .. suffix
      end
    end
  end
  return keys
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

-- reopen: a new run of a failed root workflow (retry), from a record and a journal.
-- KEYS: meta journal resolved waiting lock registry steps
-- ARGV: record run first expect_run signals n_entries entry_1 .. entry_n
--       (record is the new run's record JSON, run its run number and first the last step of
--       the runs before it; expect_run is the run the caller read; signals is how many
--       signals the journal carries unconsumed)
-- Returns '' when applied, else why not.
local meta, journal, resolved, waiting, lock, registry, steps = unpack(KEYS)
local record, run, first, expect_run, signals = unpack(ARGV, 1, 5)

local f = redis.call('HMGET', meta, 'status', 'run', 'root')
if not f[1] then
  return 'no such workflow'
end
if f[1] ~= 'failed' then
  return 'it is ' .. f[1] .. ', not failed'
end
if (f[2] or '0') ~= expect_run then
  return 'it changed meanwhile (run ' .. (f[2] or '0') .. ')'
end
if f[3] ~= '1' then
  return 'it is not a root workflow (retry its root)'
end
if redis.call('EXISTS', lock) == 1 then
  return 'a worker holds it'
end

redis.call('DEL', journal, resolved, waiting, steps)
call_chunked('RPUSH', journal, 7, 6 + tonumber(ARGV[6]))
redis.call('HSET', meta, 'rec', record, 'run', run, 'first', first, 'sigs', signals)
redis.call('HDEL', meta, 'outcome', 'done', 'wake')
set_status(meta, 'pending')
-- Active again: its tree is kept until it finishes (retention starts then).
for _, key in ipairs(registered_keys(registry)) do
  redis.call('PERSIST', key)
end
redis.call('PERSIST', registry)
local h, id = index_keys(meta)
redis.call('HDEL', h .. 'fin', id)
redis.call('ZREM', h .. 'exp', id)
return ''

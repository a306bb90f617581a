-- status: an invocation's status and, when the store has no record of it, why it was marked
-- lost (both of one tree's keys share its hash tag: one slot).
-- KEYS: meta lost
-- ARGV: invocation id
-- Returns {status or '', lost reason or ''}.
local status = redis.call('HGET', KEYS[1], 'status')
if status then
  return {status, ''}
end
return {'', redis.call('HGET', KEYS[2], ARGV[1]) or ''}

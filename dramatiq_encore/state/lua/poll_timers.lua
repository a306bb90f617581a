-- poll_timers: the timers of one shard that are due, claimed for a while (the workers' poller).
-- KEYS: the shard's timer index (ix:due)
-- ARGV: limit claim_s
-- Each returned member ('<invocation id>\31<step>\31<due>') is moved claim_s into the future
-- first: the poller that got it sends its wake-up; if that is lost (a crash), the timer is due
-- again then. The wake-up's delivery takes it out of the index (deliver.lua).
local now = now_s()
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(members) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member)
end
return members

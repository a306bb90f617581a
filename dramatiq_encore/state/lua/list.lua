-- list: one shard's page of the workflow index, newest first.
-- KEYS: the index zset (ix:all, ix:s:<status>, ix:t:<type> or ix:st:<status>:<type>)
-- ARGV: max_score after_id limit
--       (max_score is '+inf' for a first page, else the score of the previous page's last row;
--       after_id is that row's id: rows of that score come after it when their id is smaller)
-- Finished workflows whose retention passed leave the index first.
-- Returns {id, score, type, status, done or '', ...} for up to limit rows.
local index = KEYS[1]
local max, after, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local head = string.match(index, '^(.-})')
index_prune(head .. ':ix:', now_s(), 64)

local out = {}
local rows = 0
local offset = 0
while rows < limit do
  local batch = redis.call('ZREVRANGEBYSCORE', index, max, '-inf', 'WITHSCORES', 'LIMIT', offset, limit)
  if #batch == 0 then
    break
  end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    local seen = after ~= '' and max ~= '+inf' and tonumber(score) == tonumber(max) and id >= after
    if not seen and rows < limit then
      local m = redis.call('HMGET', head .. ':inv:' .. id .. ':meta', 'ix', 'status', 'done')
      if m[1] then
        rows = rows + 1
        out[#out + 1] = id
        out[#out + 1] = score
        out[#out + 1] = m[1]
        out[#out + 1] = m[2]
        out[#out + 1] = m[3] or ''
      end
    end
  end
  offset = offset + #batch / 2
end
return out

-- Renew (or give back) poll leases: move claimed tasks to a new due time, each only if its
-- score is still the lease this poller holds (so a task the poll already rescheduled, or one
-- that left the schedule, is left as it is).
-- KEYS[1] due zset
-- ARGV: new score, then task id, held score, task id, held score, ...
-- Returns the ids moved.
local out = {}
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
return out

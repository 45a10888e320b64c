-- Completion events whose next delivery attempt is due go back to the events stream.
-- KEYS: ai:events:later (zset: a JSON array of the event's field/value pairs -> when),
--       ai:events (stream)
-- ARGV: now, how many at most
-- Returns how many were moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(member)))
  redis.call('ZREM', KEYS[1], member)
end
return #due

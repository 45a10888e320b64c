-- Claim due tasks of one provider for polling, under the provider's shared rate limit.
-- KEYS[1] due zset, KEYS[2] rate-limit hash, KEYS[3] pause flag, KEYS[4] probe flag
-- (after a 429 the provider gets one query at a time until one succeeds)
-- ARGV: now, most to claim, lease seconds, rate per second, burst, horizon (claim what is due
--       by then: batch providers take tasks due a little later along, to fill a batch),
--       the provider's task key prefix (ai:t:{provider}:), ids per request (the batch size)
-- The rate limit counts requests: a batch provider's request asks about up to a batch of ids.
-- Returns {id, created, id, created, ...}: the poll gap depends on a task's age, so a poller
-- can reschedule a task the provider still calls pending without reading it again.
-- Claimed tasks stay in the schedule, due again after the lease: a poller that dies
-- mid-poll loses nothing, and no two pollers get the same task for the same due time.
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rate, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local tokens = burst
local state = redis.call('HMGET', KEYS[2], 't', 'ts')
if state[1] then
  tokens = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
end
local batch = tonumber(ARGV[8]) or 1
local n = math.min(limit, math.floor(tokens) * batch)
if redis.call('EXISTS', KEYS[4]) == 1 then n = math.min(n, 1) end
if n <= 0 then return {} end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[6], 'LIMIT', 0, n)
if #ids == 0 then return {} end
local args = {}
for i, id in ipairs(ids) do
  args[2 * i - 1] = now + lease
  args[2 * i] = id
end
redis.call('ZADD', KEYS[1], 'XX', unpack(args))
redis.call('HSET', KEYS[2], 't', tokens - math.ceil(#ids / batch), 'ts', now)
redis.call('EXPIRE', KEYS[2], 3600)
local out = {}
for i, id in ipairs(ids) do
  out[2 * i - 1] = id
  out[2 * i] = redis.call('HGET', ARGV[7] .. id, 'c') or ''
end
return out

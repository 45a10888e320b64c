-- Move one task to a new state atomically, keeping every index in step.
-- KEYS: none (single-instance Redis; keys are built from the prefix, see afterimage/keys.py)
-- ARGV: prefix, provider, task_id, now, to_state, allowed (comma list; "none" = no record yet),
--       expect_gen ("" = any), bump_gen ("1"/"0"), due_at ("" unless to_state is pending),
--       dispatch ("1"/"0"), count_dup ("1"/"0"), event ("" = none: the body of a completion
--       event, added to ai:events by this same call), then field/value pairs ("" deletes the
--       field)
-- Returns {"ok"|"skip", previous state or "none", generation}
local prefix, p, id, now, to = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local tkey = prefix .. 't:' .. p .. ':' .. id
local cur = redis.call('HMGET', tkey, 'st', 'g', 'ea', 'c')
local st = cur[1] or 'none'
local gen = tonumber(cur[2] or '0')
local allowed = false
for s in string.gmatch(ARGV[6], '[^,]+') do
  if s == st then allowed = true end
end
if (not allowed) or (ARGV[7] ~= '' and tonumber(ARGV[7]) ~= gen) then
  if ARGV[11] == '1' and st ~= 'none' then redis.call('HINCRBY', tkey, 'dup', 1) end
  return {'skip', st, gen}
end
if ARGV[8] == '1' then gen = gen + 1 end
-- One HSET and at most one HDEL. Fields at their default are not written (an absent n or g
-- reads as 0): a million pending tasks are a million small hashes.
-- A new task gets c, in whole seconds, and no u (u reads as c until the first change): a
-- listpack of st, c and an integer fits 32 bytes where a float and a u took 80.
local set, drop = {'st', to}, {}
if st == 'none' then
  set[3], set[4] = 'c', tostring(math.floor(tonumber(now)))
else
  set[3], set[4] = 'u', now
end
if gen > 0 or cur[2] then set[#set + 1], set[#set + 2] = 'g', gen end
local ea = cur[3]
for i = 13, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    drop[#drop + 1] = ARGV[i]
  else
    set[#set + 1], set[#set + 2] = ARGV[i], ARGV[i + 1]
    if ARGV[i] == 'ea' then ea = ARGV[i + 1] end
  end
end
redis.call('HSET', tkey, unpack(set))
if #drop > 0 then redis.call('HDEL', tkey, unpack(drop)) end
if st == 'pending' then
  redis.call('ZREM', prefix .. 'due:' .. p, id)
elseif st ~= 'none' then
  redis.call('ZREM', prefix .. 's:' .. st .. ':' .. p, id)
end
if to == 'pending' then
  redis.call('ZADD', prefix .. 'due:' .. p, ARGV[9], id)
else
  redis.call('ZADD', prefix .. 's:' .. to .. ':' .. p, now, id)
end
local member = p .. '\n' .. id
local closed = {archived = true, generation_failed = true, expired = true}
if closed[to] then
  redis.call('ZREM', prefix .. 'deadline', member)
elseif ea then
  redis.call('ZADD', prefix .. 'deadline', ea, member)
end
-- ai:opened counts the tasks not yet archived by the 10 s in which they were created: the
-- oldest one's age is its lowest field, and a task costs no memory of its own there.
local was_open, is_open = st ~= 'none' and not closed[st], not closed[to]
if was_open ~= is_open then
  local okey, slot = prefix .. 'opened', tostring(math.floor(tonumber(cur[4] or now) / 10) * 10)
  if is_open then
    redis.call('HINCRBY', okey, slot, 1)
  elseif redis.call('HINCRBY', okey, slot, -1) <= 0 then
    redis.call('HDEL', okey, slot)
  end
end
-- ai:outcomes:{day} counts the tasks that ended archived or failed or expired per 10 minutes
-- (field "{slot start}|{state}"), for /ops's chart of the last 24 hours; a day's hash lives
-- 25 h after its last count, so at most two are kept.
local counted = {archived = true, archive_failed = true, generation_failed = true, expired = true}
if counted[to] and st ~= to then
  local t = tonumber(now)
  local hkey = prefix .. 'outcomes:' .. tostring(math.floor(t / 86400))
  redis.call('HINCRBY', hkey, tostring(math.floor(t / 600) * 600) .. '|' .. to, 1)
  redis.call('EXPIRE', hkey, 90000)
end
if ARGV[10] == '1' then
  redis.call('XADD', prefix .. 'inbox', '*', 'p', p, 'id', id, 'g', gen, 'ea', ea or '')
end
if ARGV[12] ~= '' then
  redis.call('XADD', prefix .. 'events', '*', 'p', p, 'id', id, 'g', gen, 'e', ARGV[12])
end
return {'ok', st, gen}

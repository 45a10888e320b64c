-- Retention: remove the final tasks of one provider and state whose last change is older than
-- the cutoff, each with its record and every index entry, at most `limit` of them per call.
-- KEYS: none (single-instance Redis; keys are built from the prefix, see afterimage/keys.py)
-- ARGV: prefix, provider, state (archived, generation_failed or expired), cutoff (unix
--       seconds), limit
-- Returns how many index entries were removed.
-- A final task is not counted in ai:opened and has left ai:due and ai:deadline already
-- (lua/transition.lua); its deadline entry is removed here all the same, so that nothing of
-- it can remain. A record whose state is not the index's (an index left behind by something
-- else) keeps its record: only the stale entry goes.
local prefix, p, st = ARGV[1], ARGV[2], ARGV[3]
local index = prefix .. 's:' .. st .. ':' .. p
local ids = redis.call('ZRANGEBYSCORE', index, '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
if #ids == 0 then return 0 end
local records, members = {}, {}
for i, id in ipairs(ids) do
  local tkey = prefix .. 't:' .. p .. ':' .. id
  local cur = redis.call('HGET', tkey, 'st')
  if cur == st then records[#records + 1] = tkey end
  members[i] = p .. '\n' .. id
end
if #records > 0 then redis.call('UNLINK', unpack(records)) end
redis.call('ZREM', index, unpack(ids))
redis.call('ZREM', prefix .. 'deadline', unpack(members))
return #ids

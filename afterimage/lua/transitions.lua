-- Several transitions in one call: ARGV is n1, <the n1 arguments of one transition.lua call>,
-- n2, <n2 arguments>, ... afterimage.ledger puts transition.lua in front of this, as
-- `local function transition(ARGV) ... end`. Each transition runs as if called alone, and
-- one that fails returns {'error', message} in its place while the others go on.
local out, i = {}, 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local ok, reply = pcall(transition, {unpack(ARGV, i + 1, i + n)})
  if not ok then
    reply = {'error', type(reply) == 'table' and reply.err or tostring(reply)}
  end
  out[#out + 1] = reply
  i = i + n + 1
end
return out

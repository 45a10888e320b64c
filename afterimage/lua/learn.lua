-- Record one observed completion age in the histograms of afterimage.poll_plan.
-- KEYS: the histograms to add to (the provider's, and its model's when known)
-- ARGV: bin index, decay threshold (halve every count once the total passes it), TTL seconds
-- Each key holds at most one field per bin plus "n" (the total): its size never grows.
for _, key in ipairs(KEYS) do
  redis.call('HINCRBYFLOAT', key, ARGV[1], 1)
  local total = tonumber(redis.call('HINCRBYFLOAT', key, 'n', 1))
  if total > tonumber(ARGV[2]) then
    local fields = redis.call('HGETALL', key)
    for i = 1, #fields, 2 do
      redis.call('HSET', key, fields[i], tonumber(fields[i + 1]) / 2)
    end
  end
  redis.call('EXPIRE', key, ARGV[3])
end
return 1

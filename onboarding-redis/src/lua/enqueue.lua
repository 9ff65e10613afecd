-- ARGV[3], ARGV[4], ...: pairs of (due time in ms, 0 = now; entry).
-- Returns how many entries went to a ready lane.
local ready = 0
for i = 3, #ARGV - 1, 2 do
  local due = tonumber(ARGV[i])
  local entry = ARGV[i + 1]
  local tenant = tenant_of(entry)
  if tenant then
    if due > now then
      redis.call('ZADD', KEYS[1], due, entry)
    else
      redis.call('RPUSH', lanes .. tenant, entry)
      activate(tenant)
      ready = ready + 1
    end
  end
end
if ready > 0 then
  -- One token per ready job (at most 64): wakes that many blocked consumers.
  local tokens = {}
  for i = 1, math.min(ready, 64) do
    tokens[i] = '1'
  end
  redis.call('LPUSH', KEYS[6], unpack(tokens))
  redis.call('LTRIM', KEYS[6], 0, 63)
end
return ready

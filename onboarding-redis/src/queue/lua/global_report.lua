-- Redis Cluster, the global group. ARGV[1] entries that became ready (one
-- wake-up token each), ARGV[2] '1' when this reports a take that delivered
-- nothing, then quadruples of (tenant, seq, lane length, next event in ms
-- or -1) from tenant_push.lua / tenant_take.lua.
-- Applies each tenant's state unless a newer one (higher seq) was applied
-- already: reports of concurrent calls may arrive in any order, the newest
-- state wins. Returns { wake, tenants in the rotation }.
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
for i = 3, #ARGV - 3, 4 do
  local tenant = ARGV[i]
  local seq = tonumber(ARGV[i + 1])
  local lane_len = tonumber(ARGV[i + 2])
  local next_at = tonumber(ARGV[i + 3])
  local applied = tonumber(redis.call('HGET', g.applied, tenant) or '0')
  if seq > applied then
    g_apply(g, tenant, lane_len, next_at)
    if lane_len == 0 and next_at < 0 then
      -- Idle: forget it. An older report arriving later can then only add
      -- a rotation entry or a timer that the next take clears.
      redis.call('HDEL', g.applied, tenant)
    else
      redis.call('HSET', g.applied, tenant, seq)
    end
  end
end
g_signal(g, tonumber(ARGV[1]))
local queued = redis.call('ZCARD', g.rotation)
if ARGV[2] == '1' and queued == 0 then
  redis.call('DEL', g.signal)
end
return { g_wake(g), queued }

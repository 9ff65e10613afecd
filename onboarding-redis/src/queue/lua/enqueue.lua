-- One Redis node. KEYS: the global group (rotation, rr, timers, applied, signal).
-- ARGV[1] tenant head; ARGV[2], ARGV[3], ARGV[4], ...: triples of (tenant,
-- due time in ms with 0 = now, entry).
-- Returns how many entries went to a ready lane.
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local head = ARGV[1]
local groups = {}
local ready = 0
for i = 2, #ARGV - 2, 3 do
  local tenant = ARGV[i]
  local due = tonumber(ARGV[i + 1])
  local k = groups[tenant]
  if not k then
    k = keys_of(head, tenant)
    groups[tenant] = k
  end
  if t_push(k, due, ARGV[i + 2]) == 1 then
    g_activate(g, tenant)
    ready = ready + 1
  else
    redis.call('ZADD', g.timers, 'LT', due, tenant)
  end
end
g_signal(g, ready)
return ready

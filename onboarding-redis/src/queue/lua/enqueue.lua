-- One Redis node. KEYS: the global group (rotation, rr, timers, applied, signal).
-- ARGV[1] tenant head; then, for each tenant: the tenant, r, d, its r ready
-- entries, and d pairs (due time in ms, entry) of delayed ones.
-- Returns how many entries went to a ready lane.
--
-- The caller groups the jobs by tenant and sorts out the ready ones, so a
-- submission of 1000 jobs is one RPUSH of its ARGV slice and one
-- activation: no Lua work per job (measured: a per-job loop over
-- (tenant, due, entry) triples was ~0.9 ms of server time per 1000).
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local head = ARGV[1]
local ready = 0
local i = 2
while i <= #ARGV do
  local tenant = ARGV[i]
  local r = tonumber(ARGV[i + 1])
  local d = tonumber(ARGV[i + 2])
  local k = keys_of(head, tenant)
  i = i + 3
  local last = i + r - 1
  for j = i, last, 1000 do
    redis.call('RPUSH', k.lane, unpack(ARGV, j, math.min(j + 999, last)))
  end
  i = last + 1
  local due_now = 0
  for j = i, i + 2 * d - 1, 2 do
    local due = tonumber(ARGV[j])
    if due > now then
      redis.call('ZADD', k.delayed, due, ARGV[j + 1])
      redis.call('ZADD', g.timers, 'LT', due, tenant)
    else
      redis.call('RPUSH', k.lane, ARGV[j + 1])
      due_now = due_now + 1
    end
  end
  i = i + 2 * d
  if r + due_now > 0 then
    g_activate(g, tenant)
    ready = ready + r + due_now
  end
end
g_signal(g, ready)
return ready

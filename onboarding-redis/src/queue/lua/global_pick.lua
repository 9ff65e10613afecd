-- Redis Cluster, the global group. ARGV[1] most entries to take, ARGV[2]
-- visibility timeout (ms), ARGV[3] most due tenants, ARGV[4] ms before a
-- due timer fires again if its tenant's state is never reported.
-- Picks the tenants to take from: the head of the rotation (each moves to
-- its tail, and gets a timer by the deadline of what it is about to hand
-- out, so a taker that dies before reporting leaves nothing unscheduled)
-- and tenants whose timer is due.
-- Returns { wake, share, { head tenants }, { due tenants } }; wake is the
-- ms until the next timer when there is nothing to do, else -1.
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local max = tonumber(ARGV[1])
local heads = redis.call('ZRANGE', g.rotation, 0, max - 1)
local share = math.max(1, math.floor(max / math.max(1, #heads)))
local armed = now + tonumber(ARGV[2])
for _, tenant in ipairs(heads) do
  redis.call('ZADD', g.rotation, redis.call('INCR', g.rr), tenant)
  redis.call('ZADD', g.timers, 'LT', armed, tenant)
end
local due = redis.call('ZRANGEBYSCORE', g.timers, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, tenant in ipairs(due) do
  redis.call('ZADD', g.timers, now + tonumber(ARGV[4]), tenant)
end
if #heads == 0 and #due == 0 then
  -- Nothing ready: the remaining tokens are stale.
  redis.call('DEL', g.signal)
  return { g_wake(g), share, {}, {} }
end
return { -1, share, heads, due }

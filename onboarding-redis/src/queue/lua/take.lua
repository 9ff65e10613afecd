-- One Redis node. KEYS: the global group. ARGV[1] tenant head, ARGV[2] most
-- entries moved per call, ARGV[3] most entries to take, ARGV[4] visibility
-- timeout (ms), ARGV[5] nonce (unique per call).
-- Returns { wake, { receipt1, entry1, receipt2, entry2, ... } } where wake is
-- -1 when something was taken or nothing is scheduled, else the ms until
-- the next timer.
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local head = ARGV[1]
local budget = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local deadline = now + tonumber(ARGV[4])
local nonce = ARGV[5]

-- Tenants whose timer is due: their due delayed entries go to the tail of
-- their lane, their expired deliveries back to its head.
local due = redis.call('ZRANGEBYSCORE', g.timers, '-inf', now, 'LIMIT', 0, 100)
for _, tenant in ipairs(due) do
  if budget <= 0 then
    break
  end
  local k = keys_of(head, tenant)
  budget = budget - t_due(k, budget)
  local lane_len, next_at = t_state(k)
  g_apply(g, tenant, lane_len, next_at)
end

-- Round robin in rounds: each round gives every tenant in the rotation (in
-- serving order) an equal share of what is left to take, popped with one
-- LPOP; a tenant whose lane still has entries moves to the tail of the
-- rotation (a fresh, higher score), an empty one leaves it.
local out = {}
local n = 0
-- Per tenant that handed out entries: its keys and its deliveries.
local taken_from = {}
local order = {}
while n < max do
  local heads = redis.call('ZRANGE', g.rotation, 0, max - n - 1)
  if #heads == 0 then
    break
  end
  local share = math.max(1, math.floor((max - n) / #heads))
  local popped = {}
  local taken = n
  for _, tenant in ipairs(heads) do
    if taken >= max then
      break
    end
    local t = taken_from[tenant]
    local k = t and t.k or keys_of(head, tenant)
    local entries = redis.call('LPOP', k.lane, math.min(share, max - taken))
    if entries then
      if not t then
        t = { k = k, z = {}, h = {} }
        taken_from[tenant] = t
        order[#order + 1] = tenant
      end
      popped[#popped + 1] = { tenant = tenant, t = t, entries = entries }
      taken = taken + #entries
    end
    if redis.call('LLEN', k.lane) == 0 then
      redis.call('ZREM', g.rotation, tenant)
    else
      redis.call('ZADD', g.rotation, redis.call('INCR', g.rr), tenant)
    end
  end
  -- Deliver the round interleaved (one of each tenant in turn), each
  -- tenant's entries in their own order.
  for j = 1, share do
    for _, p in ipairs(popped) do
      local entry = p.entries[j]
      if entry then
        n = n + 1
        add_delivery(p.t.z, p.t.h, out, p.tenant .. ' ' .. nonce .. ':' .. n, entry, deadline)
      end
    end
  end
end
-- Record the deliveries; each tenant's timer fires by their deadline.
for _, tenant in ipairs(order) do
  local t = taken_from[tenant]
  t_record(t.k, t.z, t.h)
  redis.call('ZADD', g.timers, 'LT', deadline, tenant)
end

local wake = -1
if n == 0 then
  -- Nothing ready: the remaining tokens are stale.
  redis.call('DEL', g.signal)
  wake = g_wake(g)
end
return { wake, out }

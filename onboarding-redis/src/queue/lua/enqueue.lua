-- One Redis node. KEYS: the global group (rotation, rr, timers, applied, signal).
-- ARGV[1] tenant head; ARGV[2], ARGV[3], ARGV[4], ...: triples of (tenant,
-- due time in ms with 0 = now, entry).
-- Returns how many entries went to a ready lane.
--
-- Ready entries are gathered per tenant and pushed with one RPUSH per
-- tenant (in their order), and each tenant is activated once: a submission
-- of 1000 jobs is a few commands, not two per job.
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local head = ARGV[1]
local groups = {}
local order = {}
local ready = 0
for i = 2, #ARGV - 2, 3 do
  local tenant = ARGV[i]
  local due = tonumber(ARGV[i + 1])
  local group = groups[tenant]
  if not group then
    group = { k = keys_of(head, tenant), entries = {} }
    groups[tenant] = group
    order[#order + 1] = tenant
  end
  if due > now then
    redis.call('ZADD', group.k.delayed, due, ARGV[i + 2])
    redis.call('ZADD', g.timers, 'LT', due, tenant)
  else
    group.entries[#group.entries + 1] = ARGV[i + 2]
  end
end
for _, tenant in ipairs(order) do
  local group = groups[tenant]
  if #group.entries > 0 then
    call_chunked('RPUSH', group.k.lane, group.entries)
    g_activate(g, tenant)
    ready = ready + #group.entries
  end
end
g_signal(g, ready)
return ready

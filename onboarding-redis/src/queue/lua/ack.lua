-- One Redis node. KEYS: the global group; ARGV[1] tenant head; ARGV[2], ...:
-- receipts ("<tenant> <nonce>:<n>"; anything else is ignored).
-- Forgets the deliveries; a tenant with nothing delayed or in flight left
-- loses its timer, so acknowledged jobs leave nothing behind.
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local by_tenant = {}
local tenants = {}
for i = 2, #ARGV do
  local receipt = ARGV[i]
  local space = string.find(receipt, ' ', 1, true)
  if space and space > 1 then
    local tenant = string.sub(receipt, 1, space - 1)
    if not by_tenant[tenant] then
      by_tenant[tenant] = {}
      tenants[#tenants + 1] = tenant
    end
    local list = by_tenant[tenant]
    list[#list + 1] = receipt
  end
end
for _, tenant in ipairs(tenants) do
  local k = keys_of(ARGV[1], tenant)
  call_chunked('ZREM', k.inflight, by_tenant[tenant])
  call_chunked('HDEL', k.payloads, by_tenant[tenant])
  if redis.call('ZCARD', k.inflight) == 0 and redis.call('ZCARD', k.delayed) == 0 then
    redis.call('ZREM', g.timers, tenant)
  end
end
return #tenants

-- Returns { ready, delayed, in_flight } after promoting due and expired entries.
promote()
reclaim()
local ready = 0
local tenants = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, tenant in ipairs(tenants) do
  ready = ready + redis.call('LLEN', lanes .. tenant)
end
return { ready, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[4]) }

-- One Redis node, after an ack. KEYS: the global group; ARGV[1] tenant
-- head; ARGV[2], ...: tenants whose deliveries were just acknowledged.
-- Drops the timer of each that has nothing delayed or in flight left, so
-- acknowledged jobs leave nothing behind.
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
for i = 2, #ARGV do
  local k = keys_of(ARGV[1], ARGV[i])
  if redis.call('ZCARD', k.inflight) == 0 and redis.call('ZCARD', k.delayed) == 0 then
    redis.call('ZREM', g.timers, ARGV[i])
  end
end
return 0

-- Redis Cluster, one tenant's group. KEYS: lane, delayed, inflight,
-- payloads, seq. ARGV[1], ARGV[2], ...: pairs of (due time in ms with 0 =
-- now, entry).
-- Returns { seq, ready, lane length, next event (ms, -1 = none) }.
local k = tenant_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local ready = 0
for i = 1, #ARGV - 1, 2 do
  ready = ready + t_push(k, tonumber(ARGV[i]), ARGV[i + 1])
end
local seq = redis.call('INCR', k.seq)
local lane_len, next_at = t_state(k)
return { seq, ready, lane_len, next_at }

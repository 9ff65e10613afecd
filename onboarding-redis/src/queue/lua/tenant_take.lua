-- Redis Cluster, one tenant's group. KEYS: lane, delayed, inflight,
-- payloads, seq. ARGV[1] most entries moved per call, ARGV[2] most entries
-- to take (0: only move due ones), ARGV[3] visibility timeout (ms),
-- ARGV[4] receipt prefix ("<tenant> <nonce>:", unique per call).
-- Returns { seq, lane length, next event (ms, -1 = none),
-- { receipt1, entry1, ... } }.
local k = tenant_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
t_due(k, tonumber(ARGV[1]))
local max = tonumber(ARGV[2])
local deadline = now + tonumber(ARGV[3])
local out = {}
if max > 0 then
  local entries = redis.call('LPOP', k.lane, max)
  if entries then
    local z, h = {}, {}
    for i, entry in ipairs(entries) do
      add_delivery(z, h, out, ARGV[4] .. i, entry, deadline)
    end
    t_record(k, z, h)
  end
end
local seq = redis.call('INCR', k.seq)
local lane_len, next_at = t_state(k)
return { seq, lane_len, next_at, out }

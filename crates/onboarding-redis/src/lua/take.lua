-- ARGV[3] most entries to take, ARGV[4] visibility timeout (ms),
-- ARGV[5] receipt prefix (unique per call).
-- Returns { wake, { receipt1, entry1, receipt2, entry2, ... } } where wake is
-- -1 when something was taken or nothing is scheduled, else the ms until the
-- next delayed entry is due or the next delivery expires.
promote()
reclaim()

local max = tonumber(ARGV[3])
local deadline = now + tonumber(ARGV[4])
local nonce = ARGV[5]
local out = {}
local n = 0
-- Round robin: always serve the tenant at the head of the rotation, then move
-- it to the tail (a fresh, higher score) while its lane is not empty.
while n < max do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)
  local tenant = head[1]
  if not tenant then
    break
  end
  local lane = lanes .. tenant
  local entry = redis.call('LPOP', lane)
  if not entry then
    redis.call('ZREM', KEYS[2], tenant)
  else
    n = n + 1
    local receipt = nonce .. ':' .. n
    redis.call('ZADD', KEYS[4], deadline, receipt)
    redis.call('HSET', KEYS[5], receipt, entry)
    out[#out + 1] = receipt
    out[#out + 1] = entry
    if redis.call('LLEN', lane) == 0 then
      redis.call('ZREM', KEYS[2], tenant)
    else
      redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), tenant)
    end
  end
end

local wake = -1
if n == 0 then
  -- Nothing ready: the remaining tokens are stale.
  redis.call('DEL', KEYS[6])
  local d = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if d[2] then
    wake = math.max(0, tonumber(d[2]) - now)
  end
  local f = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if f[2] then
    local w = math.max(0, tonumber(f[2]) - now)
    if wake < 0 or w < wake then
      wake = w
    end
  end
end
return { wake, out }

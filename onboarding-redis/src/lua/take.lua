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
-- Round robin in rounds: each round gives every tenant in the rotation (in
-- serving order) an equal share of what is left to take, popped with one
-- LPOP; a tenant whose lane still has entries moves to the tail of the
-- rotation (a fresh, higher score), an empty one leaves it.
local function record(receipts_and_entries, zargs)
  -- Bounded unpack (Lua's C stack holds ~8000 values).
  for i = 1, #zargs, 1000 do
    redis.call('ZADD', KEYS[4], unpack(zargs, i, math.min(i + 999, #zargs)))
  end
  for i = 1, #receipts_and_entries, 1000 do
    redis.call('HSET', KEYS[5], unpack(receipts_and_entries, i, math.min(i + 999, #receipts_and_entries)))
  end
end

while n < max do
  local heads = redis.call('ZRANGE', KEYS[2], 0, max - n - 1)
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
    local lane = lanes .. tenant
    local entries = redis.call('LPOP', lane, math.min(share, max - taken))
    if entries then
      popped[#popped + 1] = entries
      taken = taken + #entries
    end
    if redis.call('LLEN', lane) == 0 then
      redis.call('ZREM', KEYS[2], tenant)
    else
      redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), tenant)
    end
  end
  -- Deliver the round interleaved (one of each tenant in turn), each
  -- tenant's entries in their own order.
  local zargs = {}
  local pairs_out = {}
  for k = 1, share do
    for _, entries in ipairs(popped) do
      local entry = entries[k]
      if entry then
        n = n + 1
        local receipt = nonce .. ':' .. n
        zargs[#zargs + 1] = deadline
        zargs[#zargs + 1] = receipt
        pairs_out[#pairs_out + 1] = receipt
        pairs_out[#pairs_out + 1] = entry
        out[#out + 1] = receipt
        out[#out + 1] = entry
      end
    end
  end
  if #zargs > 0 then
    record(pairs_out, zargs)
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

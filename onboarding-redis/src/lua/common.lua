-- Shared prelude of every queue script.
--
-- KEYS[1] delayed   ZSET  entry -> due time (ms)
-- KEYS[2] rotation  ZSET  tenant -> serving order (tenants with ready jobs)
-- KEYS[3] rr        STRING counter behind the serving order
-- KEYS[4] inflight  ZSET  receipt -> redelivery deadline (ms)
-- KEYS[5] payloads  HASH  receipt -> entry
-- KEYS[6] signal    LIST  wake-up tokens for blocked consumers
-- ARGV[1] prefix of the per-tenant ready lanes (LIST of entries)
-- ARGV[2] most delayed / expired entries moved per call
--
-- An entry is "<tenant> <json>"; tenant ids never contain a space.
if redis.replicate_commands then
  redis.replicate_commands()
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lanes = ARGV[1]
local move_limit = tonumber(ARGV[2])
local rr_now = nil

local function tenant_of(entry)
  local i = string.find(entry, ' ', 1, true)
  if i and i > 1 then
    return string.sub(entry, 1, i - 1)
  end
  return nil
end

-- Puts a tenant into the rotation unless it is there already (self-healing:
-- every push calls it, so a lost rotation key is rebuilt by new work).
local function activate(tenant)
  if not rr_now then
    rr_now = tonumber(redis.call('GET', KEYS[3]) or '0')
  end
  redis.call('ZADD', KEYS[2], 'NX', rr_now, tenant)
end

-- Moves due delayed entries to the tail of their lane.
local function promote()
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, move_limit)
  for _, entry in ipairs(due) do
    local tenant = tenant_of(entry)
    if tenant then
      redis.call('RPUSH', lanes .. tenant, entry)
      activate(tenant)
    end
    redis.call('ZREM', KEYS[1], entry)
  end
end

-- Moves deliveries past their visibility timeout back to the head of their lane.
local function reclaim()
  local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, move_limit)
  for _, receipt in ipairs(expired) do
    local entry = redis.call('HGET', KEYS[5], receipt)
    if entry then
      local tenant = tenant_of(entry)
      if tenant then
        redis.call('LPUSH', lanes .. tenant, entry)
        activate(tenant)
      end
      redis.call('HDEL', KEYS[5], receipt)
    end
    redis.call('ZREM', KEYS[4], receipt)
  end
end

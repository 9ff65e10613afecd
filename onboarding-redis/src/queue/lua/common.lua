-- Shared prelude of every queue script: the clock, and the operations on
-- the two kinds of key groups. Each group lives in one hash slot, so a
-- script that touches one group runs on Redis Cluster.
--
-- Global group, "{prefix}:{{prefix}}:q:" + name (one per queue):
--   rotation  ZSET   tenant -> serving order (tenants with ready entries)
--   rr        STRING counter behind the serving order
--   timers    ZSET   tenant -> when its next delayed entry is due or its
--                    next delivery expires (ms); may be early, never late
--   applied   HASH   tenant -> seq of the tenant state last applied (cluster)
--   signal    LIST   wake-up tokens for blocked consumers (at most 64)
-- Tenant group, "{prefix}:{{prefix}:{tenant}}:q:" + name (one per tenant):
--   lane      LIST   ready entries
--   delayed   ZSET   entry -> due time (ms)
--   inflight  ZSET   receipt -> redelivery deadline (ms)
--   payloads  HASH   receipt -> entry
--   seq       STRING counter of the group's changes (cluster)
--
-- On one Redis node the scripts enqueue.lua, take.lua, depth.lua and
-- forget_idle.lua do everything in one call (they build tenant keys from
-- the "tenant head" argument). On Redis Cluster each call touches one
-- group: tenant_*.lua on a tenant's group, then global_*.lua on the global
-- group with the tenant's state and its seq (the newest state wins).
if redis.replicate_commands then
  redis.replicate_commands()
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Runs `command key` with `values` appended, 1000 at a time (Lua's C stack
-- holds ~8000 values).
local function call_chunked(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

-- Tenant group ---------------------------------------------------------------

local function tenant_keys(lane, delayed, inflight, payloads, seq)
  return { lane = lane, delayed = delayed, inflight = inflight, payloads = payloads, seq = seq }
end

-- The keys of `tenant` from the tenant head "{prefix}:{{prefix}:".
local function keys_of(head, tenant)
  local base = head .. tenant .. '}:q:'
  return tenant_keys(base .. 'lane', base .. 'delayed', base .. 'inflight', base .. 'payloads', base .. 'seq')
end

-- Adds one entry: to `delayed` when due later, else to the lane's tail.
-- Returns 1 when it is ready.
local function t_push(k, due, entry)
  if due > now then
    redis.call('ZADD', k.delayed, due, entry)
    return 0
  end
  redis.call('RPUSH', k.lane, entry)
  return 1
end

-- Moves up to `limit` due delayed entries to the lane's tail and up to
-- `limit` expired deliveries back to its head; returns how many moved.
local function t_due(k, limit)
  local due = redis.call('ZRANGEBYSCORE', k.delayed, '-inf', now, 'LIMIT', 0, limit)
  if #due > 0 then
    call_chunked('RPUSH', k.lane, due)
    call_chunked('ZREM', k.delayed, due)
  end
  local expired = redis.call('ZRANGEBYSCORE', k.inflight, '-inf', now, 'LIMIT', 0, limit)
  for _, receipt in ipairs(expired) do
    local entry = redis.call('HGET', k.payloads, receipt)
    if entry then
      redis.call('LPUSH', k.lane, entry)
      redis.call('HDEL', k.payloads, receipt)
    end
    redis.call('ZREM', k.inflight, receipt)
  end
  return #due + #expired
end

-- Adds one delivery to the records `z` (deadline, receipt, ...) and `h`
-- (receipt, entry, ...) for t_record, and to the answer `out`.
local function add_delivery(z, h, out, receipt, entry, deadline)
  z[#z + 1] = deadline
  z[#z + 1] = receipt
  h[#h + 1] = receipt
  h[#h + 1] = entry
  out[#out + 1] = receipt
  out[#out + 1] = entry
end

-- Records deliveries: `zargs` = deadline, receipt, ...; `hargs` = receipt, entry, ...
local function t_record(k, zargs, hargs)
  if #zargs > 0 then
    call_chunked('ZADD', k.inflight, zargs)
    call_chunked('HSET', k.payloads, hargs)
  end
end

-- The lane's length and the next scheduled event (ms; -1 when none).
local function t_state(k)
  local next_at = -1
  local d = redis.call('ZRANGE', k.delayed, 0, 0, 'WITHSCORES')
  if d[2] then
    next_at = tonumber(d[2])
  end
  local f = redis.call('ZRANGE', k.inflight, 0, 0, 'WITHSCORES')
  if f[2] then
    local w = tonumber(f[2])
    if next_at < 0 or w < next_at then
      next_at = w
    end
  end
  return redis.call('LLEN', k.lane), next_at
end

-- { ready, delayed, in flight }, counting due delayed entries and expired
-- deliveries as ready (the next take moves them); moves nothing.
local function t_count(k)
  local due = redis.call('ZCOUNT', k.delayed, '-inf', now)
  local expired = redis.call('ZCOUNT', k.inflight, '-inf', now)
  return {
    redis.call('LLEN', k.lane) + due + expired,
    redis.call('ZCARD', k.delayed) - due,
    redis.call('ZCARD', k.inflight) - expired,
  }
end

-- Global group ---------------------------------------------------------------

local function global_keys(rotation, rr, timers, applied, signal)
  return { rotation = rotation, rr = rr, timers = timers, applied = applied, signal = signal }
end

local rr_now = nil

-- Puts a tenant with ready entries into the rotation unless it is there
-- already (at the current end of the serving order).
local function g_activate(g, tenant)
  if not rr_now then
    rr_now = tonumber(redis.call('GET', g.rr) or '0')
  end
  redis.call('ZADD', g.rotation, 'NX', rr_now, tenant)
end

-- Makes the rotation and the timers reflect a tenant's state: in the
-- rotation while its lane has entries, a timer at its next event.
local function g_apply(g, tenant, lane_len, next_at)
  if lane_len > 0 then
    g_activate(g, tenant)
  else
    redis.call('ZREM', g.rotation, tenant)
  end
  if next_at >= 0 then
    redis.call('ZADD', g.timers, next_at, tenant)
  else
    redis.call('ZREM', g.timers, tenant)
  end
end

-- Pushes one wake-up token per ready job (at most 64).
local function g_signal(g, ready)
  if ready > 0 then
    local tokens = {}
    for i = 1, math.min(ready, 64) do
      tokens[i] = '1'
    end
    redis.call('LPUSH', g.signal, unpack(tokens))
    redis.call('LTRIM', g.signal, 0, 63)
  end
end

-- Milliseconds until the earliest timer; -1 when there is none.
local function g_wake(g)
  local t = redis.call('ZRANGE', g.timers, 0, 0, 'WITHSCORES')
  if t[2] then
    return math.max(0, tonumber(t[2]) - now)
  end
  return -1
end

-- Every tenant with something queued (ready, delayed or in flight): those
-- in the rotation or with a timer.
local function g_tenants(g)
  local seen = {}
  local out = {}
  for _, key in ipairs({ g.rotation, g.timers }) do
    for _, tenant in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if not seen[tenant] then
        seen[tenant] = true
        out[#out + 1] = tenant
      end
    end
  end
  return out
end

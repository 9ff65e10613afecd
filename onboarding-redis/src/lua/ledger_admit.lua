-- The backlog ledger: decides on ARGV[1] incoming organizations against
-- the last reading in HASH KEYS[1] (waiting, admitted, at ms) with the
-- limit ARGV[2]; the reading is fresh when younger than ARGV[3] ms.
-- Returns {-1} without a reading, else {decision, waiting, fresh} with
-- decision 0 = admitted (counted), 1 = refused, 2 = unknown depth.
local h = redis.call('HMGET', KEYS[1], 'waiting', 'admitted', 'at')
if not h[3] then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fresh = 0
if now - tonumber(h[3]) < tonumber(ARGV[3]) then fresh = 1 end
local queued = tonumber(h[1])
if queued < 0 then return {2, 0, fresh} end
local waiting = queued + tonumber(h[2])
local incoming = tonumber(ARGV[1])
if waiting > 0 and waiting + incoming > tonumber(ARGV[2]) then
  return {1, waiting, fresh}
end
redis.call('HINCRBY', KEYS[1], 'admitted', incoming)
return {0, waiting, fresh}

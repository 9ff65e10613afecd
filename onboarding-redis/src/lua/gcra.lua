-- GCRA: one request of KEYS[1]'s allowance. ARGV[1] = emission interval
-- (µs), ARGV[2] = burst. Returns 0 when allowed, else the wait in µs.
-- Time is the server's, so every client shares one clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > tolerance then
  return math.max(1, new_tat - tolerance - now)
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0

-- A new backlog reading ARGV[1] (-1: unknown) in HASH KEYS[1], nothing
-- admitted since, stamped with the server's time; gone after a day unused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'waiting', ARGV[1], 'admitted', 0, 'at', now)
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1

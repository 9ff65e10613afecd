-- One Redis node. KEYS: the global group; ARGV[1] tenant head.
-- Returns { ready, delayed, in_flight } over every tenant; moves nothing.
local g = global_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local total = { 0, 0, 0 }
for _, tenant in ipairs(g_tenants(g)) do
  local c = t_count(keys_of(ARGV[1], tenant))
  for i = 1, 3 do
    total[i] = total[i] + c[i]
  end
end
return total

-- Redis Cluster, one tenant's group. KEYS: lane, delayed, inflight,
-- payloads, seq. Returns { ready, delayed, in_flight }; moves nothing.
return t_count(tenant_keys(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]))

-- wrk script: POST /api/v1/bulk-onboard with 1000 organizations a request,
-- every request with domains no request used before (as examples/loadgen
-- sends them), the bodies built before the run so that wrk spends no CPU on
-- them while it measures.
--   KEY=… wrk -t2 -c4 -d15s -s scripts/bench/submit.lua http://127.0.0.1:18480
-- BODIES (default 600) bodies are built per thread; past them a thread
-- starts over (its domains then exist: the server answers `unchanged`).
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  local n = tonumber(os.getenv("BODIES") or "600")
  local run = os.getenv("RUN") or tostring(os.time())
  bodies = {}
  for b = 1, n do
    local orgs = {}
    for i = 0, 999 do
      orgs[#orgs + 1] = string.format(
        '{"name":"Organization %d of %s-%d-%d","domain":"org%d-%s-%d-%d.example.com","contact_email":"ops%d@example.com"}',
        i, run, id, b, i, run, id, b, i)
    end
    bodies[b] = '{"organizations":[' .. table.concat(orgs, ",") .. ']}'
  end
  next_body = 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
  wrk.path = "/api/v1/bulk-onboard"
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("wrk: %d requests in %.1f s = %.1f/s; p50 %.1f ms, p99 %.1f ms; errors: status %d, timeout %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status, summary.errors.timeout))
end

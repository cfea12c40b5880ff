-- Request mix for every peer: GET one conversation with a bearer token.
-- wrk ... -s wrk.lua URL -- TOKENS_FILE PATH
-- TOKENS_FILE holds one token per line; requests cycle through them (one
-- line = the same token every request, the cached mix). Requests are
-- formatted once in init, so wrk's per-request cost is the same for all
-- peers and mixes. done() prints one JSON line for benches/load/run.
local reqs = {}
local n, i = 0, 0

function init(args)
  local path = args[2] or "/"
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      reqs[n] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. line })
    end
  end
  -- Each wrk thread starts at a different place in the list.
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(99), latency.mean))
end

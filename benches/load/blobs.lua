-- wrk script: GET /blob?hash=H over a list of hashes (env HASHES, one per line).
--   PICK=rr    each thread walks the list round-robin from a random start (default)
--   PICK=zipf  popularity rank i (list order) has weight 1/i^ZIPF_S (default 1.0)
-- done() prints one machine-readable RESULT line (latencies from wrk's own histogram).
local hashes = {}
for line in io.lines(os.getenv("HASHES")) do
  if #line > 0 then hashes[#hashes + 1] = line end
end
local prefix = os.getenv("URL_PREFIX") or "/blob?hash="
local pick = os.getenv("PICK") or "rr"
local s = tonumber(os.getenv("ZIPF_S") or "1.0")
local cdf = {}
if pick == "zipf" then
  local total = 0
  for i = 1, #hashes do total = total + 1 / (i ^ s); cdf[i] = total end
  for i = 1, #hashes do cdf[i] = cdf[i] / total end
end
local counter = 0

function init(args)
  local seed = os.time() + math.floor((os.clock() * 1e6) % 100000)
  math.randomseed(seed)
  counter = math.random(#hashes)
end

local function zipf_index()
  local u = math.random()
  local lo, hi = 1, #hashes
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function request()
  local i
  if pick == "zipf" then
    i = zipf_index()
  else
    counter = counter + 1
    i = counter % #hashes + 1
  end
  return wrk.format("GET", prefix .. hashes[i])
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT req_s=%.1f mb_s=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f ok=%d errors=%d\n",
    summary.requests / secs, summary.bytes / 1e6 / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout))
end

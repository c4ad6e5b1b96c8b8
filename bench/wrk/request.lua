-- One fixed request, described by the environment, repeated by every connection.
--   WRK_METHOD        GET or POST (default GET)
--   WRK_BODY_FILE     file whose bytes are the body (optional)
--   WRK_CONTENT_TYPE  Content-Type header (optional)
--   WRK_HEADER_NAME / WRK_HEADER_VALUE  one extra header (optional)
-- done() prints one JSON line, prefixed "WRK_RESULT ", that bench/load.py parses.

local body_file = os.getenv("WRK_BODY_FILE")
wrk.method = os.getenv("WRK_METHOD") or "GET"
if body_file and body_file ~= "" then
  local handle = assert(io.open(body_file, "rb"))
  wrk.body = handle:read("*all")
  handle:close()
end
local content_type = os.getenv("WRK_CONTENT_TYPE")
if content_type and content_type ~= "" then
  wrk.headers["Content-Type"] = content_type
end
local header_name = os.getenv("WRK_HEADER_NAME")
if header_name and header_name ~= "" then
  wrk.headers[header_name] = os.getenv("WRK_HEADER_VALUE")
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end

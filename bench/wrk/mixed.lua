-- A rotation of requests read from a manifest, counting every response status.
--   WRK_MANIFEST  file of lines "METHOD<TAB>PATH<TAB>CONTENT_TYPE<TAB>BODY_FILE<TAB>HEADER"
--                 (HEADER is "Name: value" or empty; BODY_FILE may be empty).
-- done() prints one JSON line, prefixed "WRK_RESULT ", with the status counts.

local requests_list = {}
local threads = {}

local function read_file(path)
  local handle = assert(io.open(path, "rb"))
  local data = handle:read("*all")
  handle:close()
  return data
end

local function load_manifest()
  for line in io.lines(os.getenv("WRK_MANIFEST")) do
    local method, path, content_type, body_file, header =
      line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t?(.*)$")
    local headers = {}
    if content_type ~= "" then headers["Content-Type"] = content_type end
    if header ~= "" then
      local name, value = header:match("^([^:]+):%s*(.*)$")
      headers[name] = value
    end
    local body = nil
    if body_file ~= "" then body = read_file(body_file) end
    table.insert(requests_list, wrk.format(method, path, headers, body))
  end
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  load_manifest()
  counter = 0
  statuses = {}
end

function request()
  counter = counter + 1
  return requests_list[(counter % #requests_list) + 1]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, count in pairs(counts) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(totals) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "statuses": {%s}, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, table.concat(parts, ", "),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end

-- wrk script: POST the same ~1 KB evolink callback with a distinct task id every time
-- (the same id twice would only be counted as a duplicate).
-- usage: wrk ... -s callbacks.lua URL -- TEMPLATE_FILE RUN_ID
-- TEMPLATE_FILE holds the body with __ID__ where the task id goes.
local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
  table.insert(threads, thread)
end

local before, after, prefix
local counter = 0
local headers = {["Content-Type"] = "application/json"}

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  local at = string.find(body, "__ID__", 1, true)
  before, after = string.sub(body, 1, at - 1), string.sub(body, at + 6)
  prefix = "task-unified-" .. args[2] .. "-" .. tostring(tid) .. "-"
end

function request()
  counter = counter + 1
  return wrk.format("POST", nil, headers, before .. prefix .. counter .. after)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end

"""What the benchmarks share: ports, a sample digit, starting the service, waiting for it,
its memory and CPU time, and wrk runs whose Lua script counts answers by status."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# wrk script: requests read from a tab-separated list (path, content type, body file) and sent
# in turn; answers counted by status in every thread; percentiles printed at the end.
WRK_MIXED = r"""
threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  counts = {}
  requests = {}
  for line in io.lines(os.getenv("REQUESTS_PATH")) do
    local path, ctype, file = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)")
    local f = io.open(file, "rb")
    local body = f:read("*all")
    f:close()
    table.insert(requests, wrk.format("POST", path, {["Content-Type"] = ctype}, body))
  end
  index = 0
end
function request()
  index = index % #requests + 1
  return requests[index]
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local total, served = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do total[status] = (total[status] or 0) + n end
  end
  for status, n in pairs(total) do
    io.write(string.format("STATUS %d %d\n", status, n))
    if status < 300 then served = served + n end
  end
  local all = summary.requests
  local e = summary.errors
  -- p99 of the answers that were served, if every other answer was faster than all of them
  local q = all > 0 and 100 * (all - 0.01 * served) / all or 99
  io.write(string.format(
    "RESULT requests=%d duration_us=%d socket_errors=%d p50=%d p99=%d served_p99=%d\n",
    all, summary.duration, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(q)))
end
"""

# WRK_MIXED with clients that wait out Retry-After after a 503, as load balancers and client
# libraries do. wrk asks for a delay before each request of a connection; the delays owed are
# handed out in the order the answers came, so the share of waiting clients is right even if
# which connection waits is approximate. wrk's latency excludes the wait.
WRK_POLITE = (
    WRK_MIXED
    + r"""
owed = {}
local count_status = response
function response(status, headers, body)
  count_status(status, headers, body)
  local wait = 0
  if status == 503 then
    wait = 1000 * tonumber(headers["retry-after"] or headers["Retry-After"] or "1")
  end
  table.insert(owed, wait)
end
function delay()
  if #owed == 0 then return 0 end
  return table.remove(owed, 1)
end
"""
)


def wrk_missing() -> bool:
    """True, having said so on stderr, when wrk is not installed."""
    if shutil.which("wrk") is not None:
        return False
    print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
    return True


def write_requests(directory: Path, name: str, requests: list[tuple[str, str, bytes]]) -> Path:
    """The request list WRK_MIXED reads: (path, content type, body) each, bodies as files."""
    lines = []
    for index, (path, content_type, body) in enumerate(requests):
        body_file = directory / f"{name}-{index}.bin"
        body_file.write_bytes(body)
        lines.append(f"{path}\t{content_type}\t{body_file}\n")
    listing = directory / f"{name}.tsv"
    listing.write_text("".join(lines))
    return listing


def run_wrk_mixed(
    port: int, connections: int, duration_s: float, requests_path: Path, script: Path
) -> dict:
    """One wrk run of WRK_MIXED: statuses, req/s, p50/p99 and the served answers' p99 (ms)."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s",
        "-s", str(script), f"http://127.0.0.1:{port}/",
    ]  # fmt: skip
    env = {**os.environ, "REQUESTS_PATH": str(requests_path)}
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT (.*)", output)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    fields = {k: int(v) for k, v in (item.split("=") for item in match.group(1).split())}
    statuses = {int(s): int(n) for s, n in re.findall(r"STATUS (\d+) (\d+)", output)}
    return {
        "requests": fields["requests"],
        "rps": fields["requests"] / (fields["duration_us"] / 1e6),
        "statuses": statuses,
        "socket_errors": fields["socket_errors"],
        "p50": fields["p50"] / 1000,
        "p99": fields["p99"] / 1000,
        "served_p99": fields["served_p99"] / 1000,
    }

"""Hostile inputs against `python -m service` (one worker, the committed models): for each
class of attack, the event loop's worst lag, the CPU the service spends per hostile request,
its peak RSS, and a light client's p99 while the attack runs.

    python -m benchmarks.hostile [--duration 4] [--data-dir ../shared/data/mnist]

Per class: the attack alone first (its requests' statuses and the worker's CPU per request,
read from /proc until the CPU stops growing), then again for `--duration` seconds (each
hostile wrk client sending again 50 ms after each answer) beside two wrk clients of one
connection each: GET /health/live (its worst latency: "probe") and POST /predict of one 28x28
digit (the light client's p99). The loop's lag is the service's own
`mnist_event_loop_lag_seconds` histogram (a timer every 20 ms; the largest bucket that gained
observations). Exits 1 when a class misses a bound: lag <= 50 ms, CPU <= 1.5 s per request,
peak RSS <= 1 GiB (the compose and k8s memory limit), light p99 <= 100 ms, no 5xx answer, and
no silent socket still open after the header timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.harness import wrk_missing
from devtools.committed import committed_models
from devtools.payloads import multipart, progressive_jpeg, sample_png
from devtools.pictures.hostile import dot_grid, many_small_digits, strip_bomb_tiff, tile_bomb_tiff
from devtools.servers import cpu_seconds, free_port, rss_mb, settled_cpu, start_service

# CPU: a request at the pixel limits (three 16-megapixel pictures) costs about a second.
MAX_LAG_MS, MAX_CPU_S, MAX_RSS_MB, MAX_LIGHT_P99_MS = 50.0, 1.5, 1024.0, 100.0
# A hostile client sends again this long after each answer: a stream of hostile requests, not
# a flood (benchmarks/overload.py floods).
PACE_MS = 50
# Each client sends its requests this many times in the measurement of CPU per request.
ALONE_REPEATS = 5
Request = tuple[str, dict[str, str], bytes]  # path, headers, body
# The hostile clients while the probes run: wrk, so that the load generator's own CPU (a
# Python client sending megabytes) does not starve the service being measured.
ATTACK_SCRIPT = """
local function read(path)
  local f = io.open(path, "rb"); local data = f:read("*a"); f:close(); return data
end
wrk.method, wrk.path, wrk.body = "POST", os.getenv("ATTACK_PATH"), read(os.getenv("ATTACK_BODY"))
for line in read(os.getenv("ATTACK_HEADERS")):gmatch("[^\\n]+") do
  local name, value = line:match("^([^:]+): (.*)$")
  wrk.headers[name] = value
end
function delay() return tonumber(os.getenv("ATTACK_PACE_MS")) end
"""
LIGHT_SCRIPT = """
local f = io.open(os.getenv("BODY_PATH"), "rb")
wrk.method, wrk.body = "POST", f:read("*a")
wrk.headers["Content-Type"] = "image/png"
"""


def attacks() -> dict[str, tuple[list[Request], int, int]]:
    """Each class: the requests one hostile client sends, how many clients send them, and
    how long each waits after an answer (ms)."""
    jpeg, png = {"content-type": "image/jpeg"}, {"content-type": "application/json"}
    webp = io.BytesIO()
    Image.new("L", (4000, 4000), 255).save(webp, "WEBP", lossless=True)
    webps, webps_type = multipart([webp.getvalue()] * 3, "image/webp")
    tiny = io.BytesIO()
    Image.new("L", (28, 28), 200).save(tiny, "JPEG")
    segments = tiny.getvalue()[:2] + b"\xff\xfe\x00\x02" * 1_000_000 + tiny.getvalue()[2:]
    header = json.dumps({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 4_000_000}}]}).encode()  # fmt: skip
    v2 = {"content-type": "application/octet-stream",
          "inference-header-content-length": str(len(header))}  # fmt: skip
    noise = io.BytesIO()
    Image.frombytes("RGB", (1200, 1200), os.urandom(1200 * 1200 * 3)).save(
        noise, "PNG", compress_level=0
    )
    pixels = json.dumps({"pixels": [[[300] * 28] * 28] * 64}).encode()
    tiff, read_png = {"content-type": "image/tiff"}, {"content-type": "image/png"}
    return {
        "500-scan progressive JPEG, 4000x4000 (74 KB)": (
            [("/predict", jpeg, progressive_jpeg(4000, 500))], 1, PACE_MS),
        "32-scan progressive JPEG, 4000x4000 (allowed)": (
            [("/predict", jpeg, progressive_jpeg(4000, 32))], 1, PACE_MS),
        "3 lossless WebP 4000x4000 (2 KB each)": (
            [("/predict", {"content-type": webps_type}, webps)], 1, PACE_MS),
        "JPEG of 1M empty segments (4 MB)": ([("/predict", jpeg, segments)], 1, PACE_MS),
        "/v2 BYTES of 1M empty elements (4 MB)": (
            [("/v2/models/group/infer", v2, header + bytes(4_000_000))], 1, PACE_MS),
        "JSON nested 5,000 deep, 5,000-digit integers": (
            [("/predict", png, b"[" * 5000 + b"]" * 5000),
             ("/predict", png, b'{"pixels": [' + b"1" * 5000 + b"]}")], 1, PACE_MS),
        "3.8 MB cut-short PNG answered 400 (4 clients)": (
            [("/predict", {"content-type": "image/png"}, noise.getvalue()[:3_800_000])], 4, PACE_MS),
        "2 MB JSON pixels answered 400 (4 clients)": (
            [("/predict", png, pixels + b" " * (2_000_000 - len(pixels)))], 4, PACE_MS),
        "/read of 11,449 dots, 320x320 (141 B)": (
            [("/read", read_png, dot_grid(320, 3))], 1, PACE_MS),
        "/read of 2-px dots, 120x120 (95 B)": (
            [("/read", read_png, dot_grid(120, 3, dot=2))], 1, PACE_MS),
        "/read of 200 small rings, 320x320": (
            [("/read", read_png, many_small_digits(320, 16))], 1, PACE_MS),
        "TIFF of 1M 4x4 tiles (8 MB)": ([("/predict", tiff, tile_bomb_tiff())], 1, PACE_MS),
        "TIFF of 1M one-row strips (8 MB)": ([("/predict", tiff, strip_bomb_tiff())], 1, PACE_MS),
    }  # fmt: skip


def send(url: str, requests: list[Request]) -> list[int]:
    """Send `requests` once; their statuses."""
    with httpx.Client(timeout=120) as client:
        return [
            client.post(url + path, headers=headers, content=body).status_code
            for path, headers, body in requests
        ]


def wrk(port: int, path: str, seconds: float, script: Path | None, body: Path) -> subprocess.Popen:
    command = ["wrk", "-t1", "-c1", f"-d{round(seconds)}s", "--latency", "--timeout", "20s"]
    command += ["-s", str(script)] if script else []
    env = {**os.environ, "BODY_PATH": str(body)}
    return subprocess.Popen(
        [*command, f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE, text=True, env=env
    )


def wrk_latency(process: subprocess.Popen) -> tuple[float, float]:
    """(p99, max) in ms from wrk's --latency output."""
    output = process.communicate()[0]
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

    def ms(text: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        assert match, f"wrk printed {text!r}:\n{output}"
        number, suffix = match.groups()
        return float(number) * unit[suffix]

    maximum = ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output).group(1))
    # The distribution's line, not a "+/- Stdev" column that happens to end in 99%.
    return ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1)), maximum


def under_attack(target: Target, attack: Callable[[], object]) -> dict[str, float]:
    """The loop's worst lag, /health/live's worst latency, the light client's p99 and the
    peak RSS while `attack()` runs (it returns after about `target.duration_s`)."""
    stop, peak, lag_before = threading.Event(), [rss_mb(target.pid)], lag_buckets(target.port)

    def sample_rss() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(target.pid))
            time.sleep(0.02)

    seconds, body = target.duration_s, target.file("digit.png")
    live = wrk(target.port, "/health/live", seconds, None, body)
    light = wrk(target.port, "/predict", seconds, target.file("light.lua"), body)
    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    attack()
    light_p99, probe = wrk_latency(light)[0], wrk_latency(live)[1]
    stop.set()
    sampler.join()
    lag = worst_lag_ms(lag_before, lag_buckets(target.port))
    return {"lag_ms": lag, "probe_ms": probe, "light_p99_ms": light_p99, "peak_rss_mb": peak[0]}


def lag_buckets(port: int) -> dict[float, float]:
    """The event loop lag histogram's cumulative counts, by upper bound in ms."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    pattern = r'mnist_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)'
    return {float(le) * 1000: float(count) for le, count in re.findall(pattern, text)}


def worst_lag_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """The upper bound of the bucket holding the largest new observation (0: none)."""
    gained = {bound: after[bound] - before.get(bound, 0) for bound in sorted(after)}
    total = gained[float("inf")]
    return next((bound for bound, count in gained.items() if count == total), 0.0) if total else 0.0


@dataclass
class Target:
    """The service under attack, and the scratch files the wrk clients read."""

    port: int
    pid: int
    duration_s: int
    scratch: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def file(self, name: str, content: str | bytes | None = None) -> Path:
        path = self.scratch / name
        if isinstance(content, str):
            path.write_text(content)
        elif content is not None:
            path.write_bytes(content)
        return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    if wrk_missing():
        return 2
    port, misses = free_port(), []
    server = start_service(port, committed_models())
    try:
        with tempfile.TemporaryDirectory() as scratch:
            target = Target(port, server.pid, args.duration, Path(scratch))
            target.file("digit.png", sample_png(args.data_dir))
            target.file("light.lua", LIGHT_SCRIPT)
            target.file("attack.lua", ATTACK_SCRIPT)
            quiet = under_attack(target, lambda: None)
            print(f"{'quiet':>48}: {_row(quiet)}")
            for name, attack in attacks().items():
                misses += measure(target, name, *attack)
            misses += silent_sockets(port, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    for miss in misses:
        print(f"MISS: {miss}")
    print("bounds held" if not misses else f"{len(misses)} bounds missed")
    return 1 if misses else 0


def measure(
    target: Target, name: str, requests: list[Request], clients: int, pace_ms: int
) -> list[str]:
    """One class: alone (statuses, CPU per request), then beside the probes (wrk clients)."""
    before = cpu_seconds(target.pid)
    with ThreadPoolExecutor(clients) as pool:
        answers = pool.map(lambda _: send(target.url, requests * ALONE_REPEATS), range(clients))
        statuses = [status for got in answers for status in got]
    cpu = (settled_cpu(target.pid) - before) / len(statuses)
    path, headers, body = requests[0]
    env = {
        **os.environ,
        "ATTACK_PATH": path,
        "ATTACK_BODY": str(target.file("attack.bin", body)),
        "ATTACK_HEADERS": str(
            target.file("attack.txt", "".join(f"{k}: {v}\n" for k, v in headers.items()))
        ),
        "ATTACK_PACE_MS": str(pace_ms),
    }
    command = ["wrk", "-t1", f"-c{clients}", f"-d{target.duration_s}s", "--timeout", "60s"]
    command += ["-s", str(target.file("attack.lua")), target.url]
    seen = under_attack(
        target, lambda: subprocess.run(command, env=env, capture_output=True, check=True)
    )
    print(
        f"{name:>48}: {_row(seen)}, CPU {cpu * 1000:4.0f} ms/request, answers {sorted(set(statuses))}"
    )
    checks = {
        f"loop lag up to {seen['lag_ms']:.0f} ms > {MAX_LAG_MS:.0f}": seen["lag_ms"] > MAX_LAG_MS,
        f"CPU {cpu:.2f} s/request > {MAX_CPU_S}": cpu > MAX_CPU_S,
        f"peak RSS {seen['peak_rss_mb']:.0f} MB > {MAX_RSS_MB:.0f}": seen["peak_rss_mb"] > MAX_RSS_MB,
        f"light p99 {seen['light_p99_ms']:.0f} ms > {MAX_LIGHT_P99_MS:.0f}":
            seen["light_p99_ms"] > MAX_LIGHT_P99_MS,
        f"answers {sorted(set(statuses))} include a 5xx": max(statuses) >= 500,
    }  # fmt: skip
    return [f"{name}: {text}" for text, missed in checks.items() if missed]


def _row(seen: dict[str, float]) -> str:
    return (
        f"lag <= {seen['lag_ms']:3.0f} ms, probe {seen['probe_ms']:5.1f} ms, light p99 "
        f"{seen['light_p99_ms']:5.1f} ms, peak RSS {seen['peak_rss_mb']:4.0f} MB"
    )


def silent_sockets(port: int, pid: int) -> list[str]:
    """60 sockets that send nothing and 5 that send 20 MB of unfinished headers: how many the
    worker still holds after its header timeout, and its RSS."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
    for connection in sockets[:5]:
        connection.settimeout(30)
        with contextlib.suppress(OSError):  # refused (431) and closed before all was sent
            connection.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000_000)
    peak = rss_mb(pid)
    deadline = time.monotonic() + 10 + 5  # MNIST_HEADER_TIMEOUT_S and some
    open_count = len(sockets)
    while time.monotonic() < deadline and open_count:
        open_count = sum(1 for connection in sockets if _still_open(connection))
        time.sleep(0.5)
    for connection in sockets:
        connection.close()
    print(f"{'60 silent sockets, 5 x 20 MB unfinished headers':>48}: {open_count} still open "
          f"after the header timeout, RSS {peak:.0f} MB")  # fmt: skip
    return [f"silent sockets: {open_count} still open"] if open_count else []


def _still_open(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        while connection.recv(65536):
            pass
        return False  # closed by the server (end of stream)
    except BlockingIOError:
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())

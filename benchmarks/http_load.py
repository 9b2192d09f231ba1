"""HTTP load test of /predict on loopback, driven by wrk: micro-batching on vs off.

Starts the service (the same `python -m service` the container runs) once per batching mode,
then runs wrk with 1, 8 and 64 connections posting one real MNIST test digit as PNG per request.
Prints req/s and p50/p95/p99 latency per row and the batching speed-up at 64 clients.

    python benchmarks/http_load.py [--duration 10] [--models-dir models]

Needs wrk (Debian package `wrk`). Python load generators saturate before the server on small
machines, so they would measure themselves.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"
local f = io.open(os.getenv("PNG_PATH"), "rb")
wrk.body = f:read("*all")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50=%d p95=%d p99=%d\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""
CONNECTIONS = (1, 8, 64)
TARGET_SPEEDUP, TARGET_P99_MS = 2.0, 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_png(data_dir: str | None) -> bytes:
    import numpy as np
    from PIL import Image

    if data_dir:
        from training.data import load_idx_directory

        digit = load_idx_directory(data_dir).test_images[0]
    else:  # a synthetic "1" when no MNIST copy is around
        digit = np.zeros((28, 28), np.uint8)
        digit[4:24, 13:16] = 255
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    return buffer.getvalue()


def start_server(port: int, models_dir: Path, max_batch_size: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MNIST_HOST": "127.0.0.1",
        "MNIST_PORT": str(port),
        "MNIST_MODELS_DIR": str(models_dir),
        "MNIST_MAX_BATCH_SIZE": str(max_batch_size),
        "MNIST_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("service did not become ready within 60 s")


def run_wrk(port: int, connections: int, duration: int, script: Path, png: Path) -> dict:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
        "-s", str(script), f"http://127.0.0.1:{port}/predict?variant=group",
    ]  # fmt: skip
    output = subprocess.run(
        command,
        env={**os.environ, "PNG_PATH": str(png)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"RESULT (.*)", output)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    fields = {k: int(v) for k, v in (item.split("=") for item in match.group(1).split())}
    return {
        "rps": fields["requests"] / (fields["duration_us"] / 1e6),
        "p50": fields["p50"] / 1000,
        "p95": fields["p95"] / 1000,
        "p99": fields["p99"] / 1000,
        "errors": fields["errors"] + fields["non2xx"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        script, png = Path(tmp) / "post.lua", Path(tmp) / "digit.png"
        script.write_text(WRK_SCRIPT)
        png.write_bytes(sample_png(args.data_dir))
        print(
            f"{'batching':<9}{'clients':>8}{'req/s':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'errors':>8}"
        )
        for mode, max_batch in (("off", 1), ("on", 64)):
            port = free_port()
            server = start_server(port, args.models_dir, max_batch)
            try:
                run_wrk(port, 8, 2, script, png)  # warm-up
                for connections in CONNECTIONS:
                    r = run_wrk(port, connections, args.duration, script, png)
                    results[mode, connections] = r
                    print(
                        f"{mode:<9}{connections:>8}{r['rps']:>9.0f}{r['p50']:>8.1f}{r['p95']:>8.1f}"
                        f"{r['p99']:>8.1f}{r['errors']:>8}",
                        flush=True,
                    )
            finally:
                server.terminate()
                server.wait(timeout=30)
    on, off = results["on", 64], results["off", 64]
    speedup = on["rps"] / off["rps"]
    print(
        f"64 clients: batching on/off = {speedup:.2f}x req/s (target >= {TARGET_SPEEDUP}x); "
        f"p99 with batching {on['p99']:.1f} ms (target <= {TARGET_P99_MS:.0f} ms)"
    )
    met = speedup >= TARGET_SPEEDUP and on["p99"] <= TARGET_P99_MS
    errors = sum(r["errors"] for r in results.values())
    return 0 if met and not errors else 1


if __name__ == "__main__":
    sys.exit(main())

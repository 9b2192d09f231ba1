"""Overload and hostile inputs, measured against `python -m service` with one worker (its CPU
is read from that one process; the container runs one per CPU).

1. Load shedding: 200 clients each posting 16 digits with `variant=all`, waiting out
   `Retry-After` after a 503 as load balancers and client libraries do, with the default bound
   on queued images and with the bound lifted (the unbounded queue, for comparison); and, with
   the default bound, 200 wrk connections that retry at once (a storm). Prints req/s served,
   answers by status, and the p99 of the served answers.
2. Cost per request: 4 clients posting 60 blank 4000x4000 PNGs each (3.4 MB a request) while 4
   other clients post one 28x28 digit. Prints the CPU seconds the service spends per such
   request (measured with the heavy clients alone) and the light clients' p50/p99 before and
   during.

    python -m benchmarks.overload [--duration 15]

Exits 1 when a target is missed: served p99 <= 1 s under shedding; <= 1.5 s CPU per heavy
request; light clients' p99 during <= 3x their p99 before.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import WRK_MIXED, WRK_POLITE, run_wrk_mixed, write_requests, wrk_missing
from devtools.committed import committed_models
from devtools.payloads import multipart, sample_png
from devtools.servers import cpu_seconds, free_port, start_service

TARGET_SERVED_P99_S, TARGET_CPU_PER_HEAVY_S, TARGET_P99_RATIO = 1.0, 1.5, 3.0


def blank_png(side: int) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side), 255, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def shedding(args: argparse.Namespace, tmp: Path, scripts: dict[str, Path], png: bytes) -> dict:
    """200 clients x 16 digits x variant=all: clients that wait out Retry-After, with the
    default bound and with the bound lifted; and clients that retry at once (a storm)."""
    body, content_type = multipart([png] * 16)
    listing = write_requests(tmp, "shed", [("/predict?variant=all", content_type, body)])
    runs = [
        ("bounded (default)", None, "polite"),
        ("retrying at once", None, "storm"),
        ("unbounded", "100000000", "polite"),
    ]
    results = {}
    for name, bound, clients in runs:
        port = free_port()
        env = {"MNIST_MAX_QUEUED_IMAGES": bound} if bound else {}
        server = start_service(port, args.models_dir, **env)
        try:
            run_wrk_mixed(port, 16, 2, listing, scripts["storm"])  # warm-up
            row = run_wrk_mixed(port, 200, args.duration, listing, scripts[clients])
        finally:
            server.terminate()
            server.wait(timeout=30)
        results[name] = row
        served = sum(n for status, n in row["statuses"].items() if status < 300)
        print(f"{name:<18} served {served / args.duration:6.1f} req/s, answers "
              f"{dict(sorted(row['statuses'].items()))}, served p99 {row['served_p99']:.0f} ms",
              flush=True)  # fmt: skip
    return results


def heavy_uploads(args: argparse.Namespace, tmp: Path, script: Path, png: bytes) -> dict:
    heavy_body, heavy_type = multipart([blank_png(4000)] * 60)
    heavy = write_requests(tmp, "heavy", [("/predict", heavy_type, heavy_body)])
    light = write_requests(tmp, "light", [("/predict", "image/png", png)])
    print(f"heavy request: 60 x 4000x4000 blank PNG, {len(heavy_body) / 1e6:.1f} MB", flush=True)
    port = free_port()
    server = start_service(port, args.models_dir)
    try:
        run_wrk_mixed(port, 4, 3, light, script)  # warm-up
        before = run_wrk_mixed(port, 4, args.duration, light, script)
        cpu = cpu_seconds(server.pid)
        alone = run_wrk_mixed(port, 4, args.duration, heavy, script)
        cpu_per_heavy = (cpu_seconds(server.pid) - cpu) / max(1, alone["requests"])
        command = [
            "wrk", "-t1", "-c4", f"-d{args.duration + 2}s", "--timeout", "30s", "-s", str(script),
            f"http://127.0.0.1:{port}/",
        ]  # fmt: skip
        env = {**os.environ, "REQUESTS_PATH": str(heavy)}
        background = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            during = run_wrk_mixed(port, 4, args.duration, light, script)
        finally:
            background.wait()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"heavy alone: {alone['requests']} requests, answers {alone['statuses']}, "
          f"{cpu_per_heavy * 1000:.1f} ms CPU each", flush=True)  # fmt: skip
    for name, row in (("light before", before), ("light during", during)):
        print(f"{name}: p50 {row['p50']:.2f} ms, p99 {row['p99']:.2f} ms, "
              f"{row['rps']:.0f} req/s", flush=True)  # fmt: skip
    return {"cpu_per_heavy": cpu_per_heavy, "before": before, "during": during, "alone": alone}


def report(shed: dict, heavy: dict) -> list[str]:
    bounded = shed["bounded (default)"]
    ratio = heavy["during"]["p99"] / heavy["before"]["p99"]
    checks = [
        ("served p99 under shedding (s)", bounded["served_p99"] / 1000, TARGET_SERVED_P99_S),
        ("CPU per 60 x 4000x4000 PNG request (s)", heavy["cpu_per_heavy"], TARGET_CPU_PER_HEAVY_S),
        ("light p99 during / before", ratio, TARGET_P99_RATIO),
    ]
    print("\n| check | measured | target |\n| --- | --- | --- |")
    misses = []
    for name, value, target in checks:
        met = value <= target
        print(f"| {name} | {value:.3f} | <= {target} {'' if met else '(MISS)'} |")
        if not met:
            misses.append(name)
    if any(status >= 500 and status != 503 for status in bounded["statuses"]):
        misses.append("5xx other than 503 under shedding")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--models-dir", type=Path, default=committed_models())
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    if wrk_missing():
        return 2
    png = sample_png(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scripts = {"storm": tmp / "mixed.lua", "polite": tmp / "polite.lua"}
        scripts["storm"].write_text(WRK_MIXED)
        scripts["polite"].write_text(WRK_POLITE)
        shed = shedding(args, tmp, scripts, png)
        heavy = heavy_uploads(args, tmp, scripts["storm"], png)
    misses = report(shed, heavy)
    print(f"\n{len(misses)} targets missed" if misses else "\nall targets met")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())

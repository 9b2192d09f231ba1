"""Issue 34's attacks, each against a fresh `python -m service` with one worker, a 5 s
deadline and a 5 s shutdown grace (MNIST_WORKERS=1 MNIST_REQUEST_TIMEOUT_S=5
MNIST_SHUTDOWN_GRACE_S=5): a few hundred bytes must never hold the service.

    python -m benchmarks.deadlines [--data-dir ../shared/data/mnist] [--only NAME...]

Per input, sent once alone: its answer and how long it took, how long the worker's CPU kept
growing after the answer, the CPU it spent (start to settled), the peak RSS growth over the
whole row; then sent again and again for 8 s beside a light client (wrk, one connection,
POST /predict of one 28x28 digit): the light client's p99, beside the same client's p99 on
the idle service, measured first. Last, SIGTERM 0.5 s into a /read of the 320x320 picture of four
bar columns and 64 pictures of wide strokes: how long the process took to exit.

Exits 1 when a bound is missed: an answer after 6 s, CPU still growing 2 s after it, RSS up by
more than 250 MB, the light p99 over 150 ms, or the process alive 8 s after SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.harness import wrk_missing
from benchmarks.hostile import LIGHT_SCRIPT, wrk, wrk_latency
from devtools.committed import committed_models
from devtools.payloads import multipart, sample_png
from devtools.pictures.hostile import (
    dot_grid,
    many_small_digits,
    strip_bomb_tiff,
    tile_bomb_tiff,
    wide_strokes,
)
from devtools.servers import cpu_seconds, free_port, rss_mb, start_service

MAX_ANSWER_S, MAX_CPU_AFTER_S, MAX_RSS_GROWTH_MB, MAX_LIGHT_P99_MS, MAX_EXIT_S = 6, 2, 250, 150, 8
CLIENT_TIMEOUT_S = 60  # an answer later than this is recorded as none
SETTINGS = {"MNIST_REQUEST_TIMEOUT_S": "5", "MNIST_SHUTDOWN_GRACE_S": "5"}


@dataclass(frozen=True)
class Attack:
    path: str
    headers: dict[str, str]
    body: bytes


def attacks() -> dict[str, Attack]:
    png, tiff = {"content-type": "image/png"}, {"content-type": "image/tiff"}
    grid = dot_grid(100, 3, bar_columns=2)
    header = json.dumps(
        {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                     "parameters": {"binary_data_size": len(grid) + 4}}],
         "outputs": [{"name": "boxes"}]}
    ).encode()  # fmt: skip
    v2 = header + len(grid).to_bytes(4, "little") + grid
    v2_headers = {"content-type": "application/octet-stream",
                  "inference-header-content-length": str(len(header))}  # fmt: skip
    zigzags, zigzags_type = multipart([wide_strokes(3)] * 64)
    return {
        "100x100 dots every 3 px + 2 bar columns": Attack("/read", png, grid),
        "140x140 the same shape": Attack("/read", png, dot_grid(140, 3, bar_columns=2)),
        "320x320 four bar columns": Attack("/read", png, dot_grid(320, 3, bar_columns=4)),
        "320x320 dots only": Attack("/read", png, dot_grid(320, 3)),
        "120x120 2-px dots every 3 px": Attack("/read", png, dot_grid(120, 3, dot=2)),
        "320x320 200 small rings": Attack("/read", png, many_small_digits(320, 16)),
        "/v2 the 100x100 picture asking for boxes": Attack(
            "/v2/models/group/infer", v2_headers, v2
        ),
        "64 pictures of wide strokes in one /read": Attack(
            "/read", {"content-type": zigzags_type}, zigzags
        ),
        "TIFF 4000x4000 of 1M 4x4 tiles": Attack("/predict", tiff, tile_bomb_tiff()),
        "TIFF 16x1M of 1M strips": Attack("/predict", tiff, strip_bomb_tiff()),
    }


def send(url: str, attack: Attack) -> tuple[str, float]:
    """(status or what happened, seconds until the answer)."""
    started = time.monotonic()
    try:
        response = httpx.post(url + attack.path, content=attack.body, headers=attack.headers,
                              timeout=CLIENT_TIMEOUT_S)  # fmt: skip
        status = str(response.status_code)
    except httpx.TimeoutException:
        status = f"none in {CLIENT_TIMEOUT_S} s"
    return status, time.monotonic() - started


def cpu_growth_after(pid: int, quiet_s: float = 0.5, most_s: float = 30) -> float:
    """Seconds from now until the worker's CPU last grew (by 10 ms in 100 ms)."""
    started = last_growth = time.monotonic()
    previous = cpu_seconds(pid)
    while (now := time.monotonic()) - last_growth < quiet_s and now - started < most_s:
        time.sleep(0.1)
        current = cpu_seconds(pid)
        if current - previous >= 0.01:
            last_growth = time.monotonic()
        previous = current
    return max(0.0, last_growth - started)


def measure(name: str, attack: Attack, scratch: Path, light_body: Path) -> tuple[str, list[str]]:
    """Alone: the answer, the CPU after it, the RSS growth; then sent again and again beside
    the light client: its p99."""
    port = free_port()
    server = start_service(port, committed_models(), **SETTINGS)
    try:
        url, pid = f"http://127.0.0.1:{port}", server.pid
        rss_before, cpu_before, done = rss_mb(pid), cpu_seconds(pid), threading.Event()
        peak = [rss_before]
        sampler = threading.Thread(target=_sample_rss, args=(pid, peak, done), daemon=True)
        sampler.start()
        status, answer_s = send(url, attack)
        cpu_after_s = cpu_growth_after(pid)
        cpu = cpu_seconds(pid) - cpu_before
        light = wrk(port, "/predict", 8, scratch / "light.lua", light_body)
        while light.poll() is None:
            send(url, attack)
        p99 = wrk_latency(light)[0]
        done.set()
    finally:
        server.kill()
        server.wait()
    growth = peak[0] - rss_before
    row = (f"{name:>42}: {status:>14} in {answer_s:5.2f} s, CPU {cpu:6.2f} s, growing "
           f"{cpu_after_s:4.1f} s after, RSS +{growth:5.0f} MB, light p99 {p99:6.1f} ms")  # fmt: skip
    checks = {
        f"answered after {answer_s:.1f} s": answer_s > MAX_ANSWER_S,
        f"CPU grew {cpu_after_s:.1f} s after the answer": cpu_after_s > MAX_CPU_AFTER_S,
        f"RSS +{growth:.0f} MB": growth > MAX_RSS_GROWTH_MB,
        f"light p99 {p99:.0f} ms": p99 > MAX_LIGHT_P99_MS,
    }
    return row, [f"{name}: {text}" for text, missed in checks.items() if missed]


def _sample_rss(pid: int, peak: list[float], done: threading.Event) -> None:
    while not done.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        time.sleep(0.05)


def idle_p99(scratch: Path, light_body: Path) -> float:
    port = free_port()
    server = start_service(port, committed_models(), **SETTINGS)
    try:
        return wrk_latency(wrk(port, "/predict", 4, scratch / "light.lua", light_body))[0]
    finally:
        server.kill()
        server.wait()


def exit_after_sigterm(attack: Attack) -> float:
    """Seconds from SIGTERM, sent 0.5 s into `attack`, to the process's exit."""
    port = free_port()
    server = start_service(port, committed_models(), **SETTINGS)
    sender = threading.Thread(target=send, args=(f"http://127.0.0.1:{port}", attack), daemon=True)
    sender.start()
    time.sleep(0.5)
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    parser.add_argument("--only", nargs="*", help="the attacks whose name holds one of these")
    args = parser.parse_args()
    if wrk_missing():
        return 2
    misses = []
    chosen = {
        name: attack
        for name, attack in attacks().items()
        if not args.only or any(part in name for part in args.only)
    }
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        light_body = scratch / "digit.png"
        light_body.write_bytes(sample_png(args.data_dir))
        (scratch / "light.lua").write_text(LIGHT_SCRIPT)
        quiet = idle_p99(scratch, light_body)
        print(f"{'idle service':>42}: light p99 {quiet:.1f} ms", flush=True)
        for name, attack in chosen.items():
            row, missed = measure(name, attack, scratch, light_body)
            print(row, flush=True)
            misses += missed
    for name in ("320x320 four bar columns", "64 pictures of wide strokes in one /read"):
        seconds = exit_after_sigterm(attacks()[name])
        print(f"{'SIGTERM 0.5 s into ' + name:>42}: exited after {seconds:.1f} s", flush=True)
        if seconds > MAX_EXIT_S:
            misses.append(f"SIGTERM during {name}: exited after {seconds:.1f} s")
    for miss in misses:
        print(f"MISS: {miss}")
    print("bounds held" if not misses else f"{len(misses)} bounds missed")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())

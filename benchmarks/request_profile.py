"""Where a request's CPU goes, stage by stage: py-spy samples the service's one worker while wrk
loads it, and each sample is put down to the stage it was in.

For each load (PNG `/predict`, Open Inference Protocol JSON and binary tensors, gRPC) and client
count, it runs `python -m service` with one worker on the committed models, reads the worker's
CPU seconds before and after a wrk (h2load for gRPC) run, divides by the requests answered, and
shares that out by py-spy's samples of every thread of the worker (but the inference thread's
waits for work, `WAITING`): a sample belongs to the innermost stage its stack passes through
(`STAGES`, first match from the leaf up). Sampling stops the worker 100 times a second, which costs throughput: read the
figures as shares of a request's CPU, and the req/s of `benchmarks.http_load` as the speed.

    python -m benchmarks.request_profile [--duration 8] [--clients 1,64] [--flamegraph docs/profile.svg]

Needs wrk, py-spy (in the dev extra; sampling another process needs ptrace rights: root, or
kernel.yama.ptrace_scope=0) and h2load (Debian `nghttp2-client`) for the gRPC rows. Exits 1
when a load answered errors or py-spy took no samples.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.harness import wrk_missing
from benchmarks.http_load import (
    WRK_SCRIPT,
    Load,
    grpc_body,
    run_h2load,
    run_wrk,
    v2_binary_body,
    v2_json_body,
)
from devtools.committed import committed_models
from devtools.payloads import sample_png
from devtools.servers import free_port, settled_cpu, start_service

# (stage, pattern on a frame "function (path:line)"), innermost stages first: a sample is put
# down to the first stage that any frame of its stack matches, from the leaf up.
STAGES: list[tuple[str, str]] = [
    ("digit check", r"[(/]service/runtime/digit_check\.py"),
    ("session run", r"(^|\.)(predict|predict_lone) \(service/runtime/backends\.py"),
    ("decoding (Pillow)", r"[(/](PIL|pillow_heif)/|(^|\.)_open \(service/dataplane/decoding\.py"),
    ("framing", r"[(/]mnist_shared/"),
    ("image checks", r"[(/]service/dataplane/(decoding|image_structure|decode_work)\.py"),
    ("multipart", r"[(/](python_multipart|multipart)/|[(/]service/rest/multipart\.py"),
    ("JSON tensors", r"[(/]service/(dataplane/(json_images|tensors)|rest/v2_body)\.py"),
    ("gRPC", r"[(/]grpc/|[(/]service/grpc/"),
    ("answer encoding", r"[(/]orjson|[(/]service/rest/responses\.py"),
    ("metrics", r"[(/]prometheus_client/"),
    ("batching hand-off", r"[(/]service/runtime/(batching|in_flight)\.py|[(/]concurrent/futures/"),
    ("data plane", r"[(/]service/dataplane/"),
    ("routes", r"[(/]service/rest/"),
    ("ASGI middleware", r"[(/](starlette|fastapi)/|[(/]service/(app|telemetry)\.py"),
    ("HTTP (uvicorn)", r"[(/](uvicorn|h11|httptools)/"),
    ("event loop", r"[(/](asyncio|uvloop)/"),
]
OTHER = "other"
# The executor's thread blocked on its work queue (a C call that uses no CPU): py-spy does not
# tell this thread's waits from its work here (it sampled the parked inference thread as busy,
# 38% of a 64-client run's samples), so such samples are left out, not put down to a stage.
WAITING = r"_worker \(concurrent/futures/thread\.py"
# py-spy installed beside this Python (a virtualenv's bin/), else on PATH.
PY_SPY = (
    str(Path(sys.executable).with_name("py-spy"))
    if Path(sys.executable).with_name("py-spy").exists()
    else (shutil.which("py-spy") or "py-spy")
)


def stage_of(stack: list[str]) -> str:
    """The stage of one sampled stack (frames root first, as py-spy writes them)."""
    for frame in reversed(stack):
        for stage, pattern in STAGES:
            if re.search(pattern, frame):
                return stage
    return OTHER


def read_samples(raw: Path) -> Counter:
    """{stage: samples} from py-spy's raw (collapsed stack) output, without the samples of the
    inference thread waiting for work (`WAITING`)."""
    counts: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and not re.match(WAITING, frames[-1]):
            counts[stage_of(frames)] += int(count)
    return counts


def profile_load(
    pid: int, run_load: object, duration: int, output: Path, fmt: str = "raw"
) -> tuple[dict, float]:
    """(the load's result, the worker's CPU seconds during it), py-spy sampling meanwhile."""
    sampler = subprocess.Popen(
        [PY_SPY, "record", "--pid", str(pid), "--rate", "100", "--format", fmt,
         "--duration", str(duration + 2), "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    before = settled_cpu(pid)
    result = run_load()  # type: ignore[operator]
    used = settled_cpu(pid) - before
    sampler.wait(timeout=60)
    return result, used


def loads(tmp: Path, png: bytes) -> dict[str, Load | Path]:
    """Each load's body, written where wrk or h2load reads it."""
    (tmp / "digit.png").write_bytes(png)
    (tmp / "v2.json").write_bytes(v2_json_body(png))
    binary, header_length = v2_binary_body(png, 1)
    (tmp / "v2.bin").write_bytes(binary)
    (tmp / "grpc.bin").write_bytes(grpc_body(png))
    return {
        "/predict PNG": Load("/predict?variant=group", tmp / "digit.png", "image/png"),
        "/v2 JSON": Load("/v2/models/group/infer", tmp / "v2.json", "application/json"),
        "/v2 binary": Load(
            "/v2/models/group/infer",
            tmp / "v2.bin",
            "application/octet-stream",
            str(header_length),
        ),
        "gRPC": tmp / "grpc.bin",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_profile")
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per row")
    parser.add_argument("--clients", default="1,64", help="comma-separated client counts")
    parser.add_argument("--loads", default="/predict PNG,/v2 JSON,/v2 binary,gRPC")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    parser.add_argument("--raw-dir", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--flamegraph", type=Path, help="an SVG of PNG /predict at 64 clients")
    args = parser.parse_args(argv)
    if wrk_missing():
        return 2
    if not Path(PY_SPY).exists():
        print("error: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    clients = [int(count) for count in args.clients.split(",")]
    if args.raw_dir:
        args.raw_dir.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    server = start_service(port, committed_models(), MNIST_GRPC_PORT=str(grpc_port))
    rows: dict[tuple[str, int], tuple[dict, float, Counter]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "post.lua").write_text(WRK_SCRIPT)
            bodies = loads(tmp, sample_png(args.data_dir))
            for name in args.loads.split(","):
                for count in clients:
                    rows[(name, count)] = _profiled_row(
                        server.pid, name, bodies[name], count, port, grpc_port, tmp, args
                    )
                    _print_row(name, count, *rows[(name, count)])
            if args.flamegraph:
                load = bodies["/predict PNG"]
                args.flamegraph.parent.mkdir(parents=True, exist_ok=True)
                profile_load(
                    server.pid,
                    lambda: run_wrk(port, 64, args.duration, tmp / "post.lua", load),  # type: ignore[arg-type]
                    args.duration, args.flamegraph, "flamegraph",
                )  # fmt: skip
                print(f"wrote {args.flamegraph}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    _print_table(rows)
    broken = [f"{name} x{count}" for (name, count), (result, _, samples) in rows.items()
              if result.get("errors") or not samples]  # fmt: skip
    if broken:
        print(f"MISS: errors or no samples (the profile means nothing): {', '.join(broken)}")
    return 1 if broken else 0


def _profiled_row(
    pid: int, name: str, body: Load | Path, count: int, port: int, grpc_port: int, tmp: Path,
    args: argparse.Namespace,
) -> tuple[dict, float, Counter]:  # fmt: skip
    """One load at one client count: (result, CPU seconds per request, samples by stage)."""
    if isinstance(body, Path):  # gRPC through h2load
        if not shutil.which("h2load"):
            return {"rps": 0.0, "errors": "h2load missing (nghttp2-client)"}, 0.0, Counter()

        def run() -> dict:
            return run_h2load(grpc_port, count, args.duration, body)
    else:

        def run() -> dict:
            return run_wrk(port, count, args.duration, tmp / "post.lua", body)

    raw = (
        args.raw_dir or tmp
    ) / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}-x{count}.txt"
    result, used = profile_load(pid, run, args.duration, raw)
    requests = max(1.0, result["rps"] * args.duration)
    return result, used / requests, read_samples(raw) if raw.exists() else Counter()


def _print_row(name: str, count: int, result: dict, per_request: float, samples: Counter) -> None:
    print(
        f"{name} x{count}: {result['rps']:.0f} req/s under sampling, "
        f"{per_request * 1e6:.0f} us of CPU a request, {sum(samples.values())} samples",
        flush=True,
    )


def _print_table(rows: dict[tuple[str, int], tuple[dict, float, Counter]]) -> None:
    """Microseconds of CPU a request by stage, a column per load and client count."""
    columns = list(rows)
    stages = [stage for stage, _ in STAGES] + [OTHER]
    print("| stage | " + " | ".join(f"{name} x{count}" for name, count in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for stage in stages:
        cells = []
        for column in columns:
            _, per_request, samples = rows[column]
            total = sum(samples.values()) or 1
            cells.append(f"{per_request * 1e6 * samples[stage] / total:.0f}")
        if any(cell != "0" for cell in cells):
            print(f"| {stage} | " + " | ".join(cells) + " |")
    totals = [f"**{rows[column][1] * 1e6:.0f}**" for column in columns]
    print("| **all (us of CPU a request)** | " + " | ".join(totals) + " |")


if __name__ == "__main__":
    raise SystemExit(main())

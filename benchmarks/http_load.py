"""HTTP load test on loopback, driven by wrk: the service beside the naive peers, in one run.

Starts the service (the same `python -m service` the container runs, its default workers) and the
two reference peers of `../shared/bench/naive_peer.py` on the same committed group model
(`inline`: inference on the event loop; `thread`: in a one-thread executor), then runs wrk with
1, 8 and 64 connections posting one real MNIST test digit as PNG per request, rounds interleaved
so that the machine's noise hits all alike, each configuration `--rounds` times, best kept (the
1-client runs of a round in 3 alternating slices of a third of the duration). Also
measured on the service: `variant=all` (three models a request), the Open Inference Protocol's
`/v2/models/group/infer` with binary tensors (1 and 8 images a request, wrk) and gRPC
`ModelInfer` (1 image, h2load from Debian's `nghttp2-client`, which reports mean latency only).

    python -m benchmarks.http_load [--duration 8] [--rounds 2] [--peer ../shared/bench/naive_peer.py]

Prints every row and the ratio table against the issue's targets; exits 1 on a miss. Needs wrk
(Debian package `wrk`): Python load generators saturate before the server on small machines.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import wrk_missing
from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.payloads import sample_png
from devtools.servers import free_port, wait_for
from service.runtime.cpus import available_cpus

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE")
if os.getenv("HEADER_LENGTH") ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = os.getenv("HEADER_LENGTH")
end
local f = io.open(os.getenv("BODY_PATH"), "rb")
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
LONE_CLIENT_SLICES = 3  # each round's 1-client runs, split in alternating slices
# Targets (issue "HTTP hot path"): ratios to the peers measured in the same run.
TARGET_VS_INLINE, TARGET_VS_THREAD, TARGET_P99_MS = 2.0, 1.5, 60.0
TARGET_LONE_P50, TARGET_ALL_VS_THREAD = 1.1, 0.6
DEFAULT_PEER = REPO_ROOT.parent / "shared" / "bench" / "naive_peer.py"


def start_server(
    port: int, grpc_port: int, models_dir: Path, workers: int = 0, **settings: str
) -> subprocess.Popen:
    """`python -m service` as the container runs it; `settings`: more MNIST_* variables."""
    env = {
        **os.environ,
        "MNIST_WORKERS": str(workers),
        "MNIST_HOST": "127.0.0.1",
        "MNIST_PORT": str(port),
        "MNIST_GRPC_PORT": str(grpc_port),
        "MNIST_MODELS_DIR": str(models_dir),
        "MNIST_LOG_LEVEL": "warning",
        # Throughput is measured here, not load shedding (benchmarks/overload.py does that):
        # 64 clients x 8 images would otherwise pass the default bound of 256 queued images.
        "MNIST_MAX_QUEUED_IMAGES": "100000",
        **settings,
    }
    server = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env)
    wait_for(port, "/health/ready", server, answers=8 * (workers or available_cpus()))
    return server


@dataclass(frozen=True)
class Load:
    """One kind of request: a path and a body, written to a file wrk reads."""

    path: str
    body: Path
    content_type: str
    header_length: str = ""


def v2_binary_body(png: bytes, images: int) -> tuple[bytes, int]:
    """An Open Inference Protocol request of `images` copies of the digit as binary FP32."""
    import numpy as np
    from PIL import Image

    from mnist_shared.preprocessing import scale_pixels

    pixels = scale_pixels(np.asarray(Image.open(io.BytesIO(png))))
    batch = np.ascontiguousarray(np.broadcast_to(pixels, (images, 28, 28)))
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [images, 28, 28],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": batch.nbytes},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + batch.tobytes(), len(header)


def v2_json_body(png: bytes) -> bytes:
    """An Open Inference Protocol request of the digit as a JSON tensor, FP32 [1, 28, 28], each
    pixel to 4 decimals (as a client writing floats would send it)."""
    import numpy as np
    from PIL import Image

    from mnist_shared.preprocessing import scale_pixels

    pixels = scale_pixels(np.asarray(Image.open(io.BytesIO(png)))).round(4)
    tensor = {"name": "image", "shape": [1, 28, 28], "datatype": "FP32"}
    return json.dumps({"inputs": [{**tensor, "data": pixels.ravel().tolist()}]}).encode()


def grpc_body(png: bytes) -> bytes:
    """A length-prefixed gRPC ModelInfer message of one digit, raw FP32 contents."""
    import numpy as np
    from PIL import Image

    from mnist_shared.preprocessing import scale_pixels
    from service.grpc import grpc_predict_v2_pb2 as pb

    pixels = scale_pixels(np.asarray(Image.open(io.BytesIO(png))))
    request = pb.ModelInferRequest(model_name="group")
    request.inputs.add(name="image", datatype="FP32", shape=[1, 28, 28])
    request.raw_input_contents.append(pixels.tobytes())
    message = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(message)) + message


def run_wrk(port: int, connections: int, duration: int, script: Path, load: Load) -> dict:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
        "-s", str(script), f"http://127.0.0.1:{port}{load.path}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "BODY_PATH": str(load.body),
        "CONTENT_TYPE": load.content_type,
        "HEADER_LENGTH": load.header_length,
    }
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
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


def run_h2load(port: int, streams: int, duration: int, body: Path) -> dict:
    """gRPC ModelInfer over h2c: `streams` concurrent calls on 8 connections."""
    command = [
        "h2load", f"-c{min(streams, 8)}", f"-m{max(1, streams // 8)}", f"-D{duration}",
        "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in .*?, ([\d.]+) req/s", output).group(1))
    succeeded = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", output)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", output).group(1)
    mean_ms = float(mean[:-2]) if mean.endswith("ms") else float(mean[:-2]) / 1000
    return {"rps": rps, "mean": mean_ms, "errors": int(succeeded[2]) + int(succeeded[3])}


ROW = "{:<9}{:<22}{:>8}{:>9.0f}{:>8.1f}{:>8.1f}{:>8.1f}{:>8}"
HEADER = f"{'server':<9}{'load':<22}{'clients':>8}{'req/s':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'errors':>8}"


def write_bodies(tmp: Path, png: bytes) -> dict:
    (tmp / "post.lua").write_text(WRK_SCRIPT)
    (tmp / "digit.png").write_bytes(png)
    files: dict = {"script": tmp / "post.lua"}
    files["/predict PNG"] = Load("/predict?variant=group", tmp / "digit.png", "image/png")
    files["/predict all"] = Load("/predict?variant=all", tmp / "digit.png", "image/png")
    files["peer PNG"] = Load("/predict", tmp / "digit.png", "image/png")
    for images in (1, 8):
        body, header_length = v2_binary_body(png, images)
        (tmp / f"v2_{images}.bin").write_bytes(body)
        files[f"/v2 binary x{images}"] = Load(
            "/v2/models/group/infer", tmp / f"v2_{images}.bin", "application/octet-stream",
            str(header_length),
        )  # fmt: skip
    (tmp / "grpc.bin").write_bytes(grpc_body(png))
    files["grpc"] = tmp / "grpc.bin"
    return files


def start_peer(peer: Path, model: Path, port: int, mode: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(peer), str(model), str(port), mode])
    wait_for(port, "/docs", process)
    return process


def keep_best(results: dict, key: tuple, row: dict) -> None:
    if key not in results or row["rps"] > results[key]["rps"]:
        results[key] = row


def measure(args: argparse.Namespace, files: dict, servers: dict) -> dict:
    """Best of `args.rounds` interleaved rounds of every (server, load, clients)."""
    plan = []
    for clients in CONNECTIONS:
        # A lone client's latency swings with the machine's slow phases, which last seconds:
        # short slices, alternating between the servers, make every server see the same ones.
        slices = LONE_CLIENT_SLICES if clients == 1 else 1
        duration = max(1, round(args.duration / slices))
        plan += [(name, "/predict PNG" if name == "service" else "peer PNG", clients, duration)
                 for _ in range(slices) for name in ("service", "inline", "thread")]  # fmt: skip
    plan += [("service", load, 64, args.duration)
             for load in ("/predict all", "/v2 binary x1", "/v2 binary x8")]  # fmt: skip
    results: dict = {}
    for name in ("service", "inline", "thread"):  # warm-up
        port = servers[name]
        run_wrk(
            port, 8, 2, files["script"], files["peer PNG" if name != "service" else "/predict PNG"]
        )
    for round_ in range(args.rounds):
        for name, load, clients, duration in plan:
            row = run_wrk(servers[name], clients, duration, files["script"], files[load])
            keep_best(results, (name, load, clients), row)
            print(
                ROW.format(
                    name,
                    load,
                    clients,
                    row["rps"],
                    row["p50"],
                    row["p95"],
                    row["p99"],
                    row["errors"],
                ),
                flush=True,
            )
        if shutil.which("h2load"):
            row = run_h2load(servers["grpc"], 64, args.duration, files["grpc"])
            keep_best(
                results,
                ("service", "gRPC x1 (mean)", 64),
                row | {"p50": row["mean"], "p95": 0.0, "p99": 0.0},
            )
            print(
                ROW.format(
                    "service", "gRPC x1 (mean)", 64, row["rps"], row["mean"], 0, 0, row["errors"]
                ),
                flush=True,
            )
        print(f"-- round {round_ + 1} of {args.rounds} done", flush=True)
    return results


def report(results: dict) -> list[str]:
    """The ratio table against the targets; returns the misses."""
    service, inline, thread = (
        results[n, "/predict PNG" if n == "service" else "peer PNG", 64]
        for n in ("service", "inline", "thread")
    )
    lone = {
        n: results[n, "/predict PNG" if n == "service" else "peer PNG", 1]
        for n in ("service", "inline")
    }
    every = results["service", "/predict all", 64]
    checks = [
        ("64 clients req/s / inline peer", service["rps"] / inline["rps"], TARGET_VS_INLINE, ">="),
        ("64 clients req/s / thread peer", service["rps"] / thread["rps"], TARGET_VS_THREAD, ">="),
        ("64 clients p99 ms", service["p99"], TARGET_P99_MS, "<="),
        (
            "1 client p50 / inline peer p50",
            lone["service"]["p50"] / lone["inline"]["p50"],
            TARGET_LONE_P50,
            "<=",
        ),
        (
            "variant=all 64 clients / thread peer",
            every["rps"] / thread["rps"],
            TARGET_ALL_VS_THREAD,
            ">=",
        ),
    ]
    misses = []
    print("\n| check | measured | target |\n| --- | --- | --- |")
    for name, value, target, sense in checks:
        met = value >= target if sense == ">=" else value <= target
        print(f"| {name} | {value:.2f} | {sense} {target} {'' if met else '(MISS)'} |")
        if not met:
            misses.append(name)
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds, best kept")
    parser.add_argument("--models-dir", type=Path, default=committed_models())
    parser.add_argument("--peer", type=Path, default=DEFAULT_PEER, help="naive_peer.py")
    parser.add_argument(
        "--workers", type=int, default=0, help="the service's uvicorn workers; 0: its default"
    )
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    if wrk_missing():
        return 2
    if not args.peer.is_file():
        print(f"error: no peer at {args.peer}; pass --peer path/to/naive_peer.py", file=sys.stderr)
        return 2
    from mnist_shared.manifest import latest_version

    model = (
        args.models_dir / "group" / str(latest_version(args.models_dir / "group")) / "model.onnx"
    )
    ports = {name: free_port() for name in ("service", "grpc", "inline", "thread")}
    processes = []
    with tempfile.TemporaryDirectory() as tmp:
        files = write_bodies(Path(tmp), sample_png(args.data_dir))
        try:
            processes.append(
                start_server(ports["service"], ports["grpc"], args.models_dir, args.workers)
            )
            processes += [start_peer(args.peer, model, ports[m], m) for m in ("inline", "thread")]
            print(HEADER)
            results = measure(args, files, ports)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)
    misses = report(results)
    errors = sum(r["errors"] for r in results.values())
    print("targets met" if not misses else f"{len(misses)} targets missed", f"({errors} errors)")
    return 0 if not misses and not errors else 1


if __name__ == "__main__":
    sys.exit(main())

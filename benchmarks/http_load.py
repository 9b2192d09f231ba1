"""HTTP load test of /predict on loopback, driven by wrk: micro-batching on vs off.

Starts the service (the same `python -m service` the container runs) once per batching mode,
then runs wrk with 1, 8 and 64 connections posting one real MNIST test digit as PNG per request.
Prints req/s and p50/p95/p99 latency per row and the batching speed-up at 64 clients. With
batching on it also loads the Open Inference Protocol: `/v2/models/group/infer` with binary
tensors (1 and 8 images a request, wrk) and gRPC `ModelInfer` (1 image, h2load from Debian's
`nghttp2-client`, which reports mean latency, not percentiles).

    python benchmarks/http_load.py [--duration 10] [--models-dir models]

Needs wrk (Debian package `wrk`). Python load generators saturate before the server on small
machines, so they would measure themselves.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def start_server(
    port: int, grpc_port: int, models_dir: Path, max_batch_size: int
) -> subprocess.Popen:
    env = {
        **os.environ,
        "MNIST_HOST": "127.0.0.1",
        "MNIST_PORT": str(port),
        "MNIST_GRPC_PORT": str(grpc_port),
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


def grpc_body(png: bytes) -> bytes:
    """A length-prefixed gRPC ModelInfer message of one digit, raw FP32 contents."""
    import numpy as np
    from PIL import Image

    from mnist_shared.preprocessing import scale_pixels
    from service.v2_grpc import grpc_predict_v2_pb2 as pb

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


ROW = "{:<22}{:<9}{:>8}{:>9.0f}{:>8.1f}{:>8.1f}{:>8.1f}{:>8}"


def measure_mode(mode: str, max_batch: int, args: argparse.Namespace, files: dict) -> dict:
    """Rows of one server run: /predict at each client count; with batching, the protocol too."""
    port, grpc_port = free_port(), free_port()
    server = start_server(port, grpc_port, args.models_dir, max_batch)
    results = {}
    try:
        run_wrk(port, 8, 2, files["script"], files["predict"])  # warm-up
        for connections in CONNECTIONS:
            r = run_wrk(port, connections, args.duration, files["script"], files["predict"])
            results["/predict PNG", connections] = r
            print(
                ROW.format(
                    "/predict PNG",
                    mode,
                    connections,
                    r["rps"],
                    r["p50"],
                    r["p95"],
                    r["p99"],
                    r["errors"],
                ),
                flush=True,
            )
        if mode != "on":
            return results
        for name in ("/v2 binary x1", "/v2 binary x8"):
            r = run_wrk(port, 64, args.duration, files["script"], files[name])
            results[name, 64] = r
            print(
                ROW.format(name, mode, 64, r["rps"], r["p50"], r["p95"], r["p99"], r["errors"]),
                flush=True,
            )
        if shutil.which("h2load"):
            r = run_h2load(grpc_port, 64, args.duration, files["grpc"])
            results["gRPC x1", 64] = r | {"p50": r["mean"]}
            print(
                f"{'gRPC x1 (mean ms)':<22}{mode:<9}{64:>8}{r['rps']:>9.0f}{r['mean']:>8.1f}{'':>16}{r['errors']:>8}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def write_bodies(tmp: Path, png: bytes) -> dict:
    (tmp / "post.lua").write_text(WRK_SCRIPT)
    (tmp / "digit.png").write_bytes(png)
    files: dict = {"script": tmp / "post.lua"}
    files["predict"] = Load("/predict?variant=group", tmp / "digit.png", "image/png")
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
        files = write_bodies(Path(tmp), sample_png(args.data_dir))
        print(
            f"{'endpoint':<22}{'batching':<9}{'clients':>8}{'req/s':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'errors':>8}"
        )
        for mode, max_batch in (("off", 1), ("on", 64)):
            results |= {
                (mode, *key): r for key, r in measure_mode(mode, max_batch, args, files).items()
            }
    on, off = results["on", "/predict PNG", 64], results["off", "/predict PNG", 64]
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

"""The same app under uvicorn (the service's server) and granian (an ASGI server written in
Rust), one worker each, side by side in one run: is the server what a request waits for?

Both serve `service.asgi:app` on the committed models with the same MNIST_* settings (gRPC
off). wrk posts one MNIST test digit as PNG to `/predict?variant=group` with 1 and 64
connections, and an Open Inference Protocol JSON tensor with 8; rounds alternate between the
servers so that the machine's noise hits both alike, best of `--rounds` kept. The worker's CPU
seconds per request are read from /proc for each run.

    python -m benchmarks.asgi_servers [--duration 8] [--rounds 2]

Needs wrk and granian (`pip install granian`: not a dependency, the service runs on uvicorn);
prints a table and the ratios granian/uvicorn, and exits 1 when granian serves 10% more
requests a second on any load: then the design's choice of server is to be measured again.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import wrk_missing
from benchmarks.http_load import WRK_SCRIPT, Load, run_wrk, v2_json_body
from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.payloads import sample_png
from devtools.servers import free_port, settled_cpu, wait_for

SERVERS = ("uvicorn", "granian")
RUNS = (("/predict PNG", 1), ("/predict PNG", 64), ("/v2 JSON", 8))


def start(server: str, port: int, models_dir: Path) -> subprocess.Popen:
    """One worker of `server` serving the app, once it answers."""
    env = {
        **os.environ,
        "MNIST_MODELS_DIR": str(models_dir),
        "MNIST_GRPC_PORT": "0",
        "MNIST_WORKERS": "1",
        "MNIST_LOG_LEVEL": "warning",
        "MNIST_HOST": "127.0.0.1",
        "MNIST_PORT": str(port),
        "MNIST_MAX_QUEUED_IMAGES": "100000",
    }
    if server == "uvicorn":  # the service's own entry point: its protocol and limits
        command = [sys.executable, "-m", "service"]
    else:
        command = [
            str(Path(sys.executable).with_name("granian")), "--interface", "asgi",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--log-level", "warning", "service.asgi:app",
        ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    wait_for(port, "/health/ready", process, answers=4)
    return process


def worker_pid(process: subprocess.Popen) -> int:
    """The process that serves: uvicorn's one worker is itself; granian forks one."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return int(children[0]) if children else process.pid


def bodies(tmp: Path, png: bytes) -> dict[str, Load]:
    (tmp / "post.lua").write_text(WRK_SCRIPT)
    (tmp / "digit.png").write_bytes(png)
    (tmp / "v2.json").write_bytes(v2_json_body(png))
    return {
        "/predict PNG": Load("/predict?variant=group", tmp / "digit.png", "image/png"),
        "/v2 JSON": Load("/v2/models/group/infer", tmp / "v2.json", "application/json"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.asgi_servers")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds, best kept")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args(argv)
    if wrk_missing():
        return 2
    if not Path(sys.executable).with_name("granian").exists():
        print("error: granian is not installed (pip install granian)", file=sys.stderr)
        return 2
    best: dict[tuple[str, str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        loads = bodies(Path(tmp_name), sample_png(args.data_dir))
        script = Path(tmp_name) / "post.lua"
        for round_number in range(args.rounds):
            for server in SERVERS if round_number % 2 == 0 else reversed(SERVERS):
                port = free_port()
                process = start(server, port, committed_models())
                try:
                    pid = worker_pid(process)
                    for name, clients in RUNS:
                        before = settled_cpu(pid)
                        result = run_wrk(port, clients, args.duration, script, loads[name])
                        requests = max(1.0, result["rps"] * args.duration)
                        result["cpu_us"] = (settled_cpu(pid) - before) / requests * 1e6
                        key = (server, name, clients)
                        if key not in best or result["rps"] > best[key]["rps"]:
                            best[key] = result
                        print(f"round {round_number + 1} {server} {name} x{clients}: "
                              f"{result['rps']:.0f} req/s", flush=True)  # fmt: skip
                finally:
                    process.terminate()
                    process.wait(timeout=30)
    return _report(best)


CLEARLY_FASTER = 1.1


def _report(best: dict[tuple[str, str, int], dict]) -> int:
    print("\n| server | load | clients | req/s | p50 ms | p99 ms | CPU us a request | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (server, name, clients), r in best.items():
        print(
            f"| {server} | {name} | {clients} | {r['rps']:.0f} | {r['p50']:.2f} | "
            f"{r['p99']:.2f} | {r['cpu_us']:.0f} | {r['errors']} |"
        )
    print("\n| load | clients | granian / uvicorn req/s |\n| --- | ---: | ---: |")
    faster = False
    for name, clients in RUNS:
        ratio = best[("granian", name, clients)]["rps"] / best[("uvicorn", name, clients)]["rps"]
        print(f"| {name} | {clients} | {ratio:.2f} |")
        faster = faster or ratio >= CLEARLY_FASTER
    print(
        "granian is clearly faster: measure again"
        if faster
        else "uvicorn stays (as fast or faster)"
    )
    return 1 if faster else 0


if __name__ == "__main__":
    raise SystemExit(main())

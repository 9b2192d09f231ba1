"""Requests per second through Ray Serve's proxy with 1 and 2 replicas, beside the plain service,
in one run on this machine (wrk, 64 clients, one PNG digit a request, rounds interleaved, best
of `--rounds` kept).

    python -m benchmarks.ray_scaling [--ray-venv .venv-ray] [--duration 10] [--rounds 2]

Starts a local Ray cluster (`ray start --head`), deploys deploy/ray/serve_config.yaml with the
replica count changed, and stops the cluster at the end. Prints a table; no target (the issue
asks for the figures), so it exits 0 unless something fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.harness import WRK_MIXED, run_wrk_mixed, write_requests, wrk_missing
from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.payloads import sample_png
from devtools.servers import free_port, start_service


class RayCluster:
    """A local Ray cluster from `ray_venv`, serving the config at `port` with N replicas."""

    def __init__(self, ray_venv: Path, tmp: Path) -> None:
        self.bin, self.tmp = ray_venv / "bin", tmp
        self.gcs, self.dashboard, self.port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{self.gcs}",
                    "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip

    def run(self, *args: str) -> None:
        subprocess.run(
            args, env=self.env, cwd=REPO_ROOT, check=True, capture_output=True, timeout=300
        )

    def start(self) -> None:
        self.run(str(self.bin / "ray"), "start", "--head", f"--port={self.gcs}",
                 f"--dashboard-port={self.dashboard}", f"--temp-dir={self.tmp / 'session'}",
                 "--disable-usage-stats")  # fmt: skip

    def deploy(self, replicas: int) -> None:
        config = yaml.safe_load((REPO_ROOT / "deploy" / "ray" / "serve_config.yaml").read_text())
        config["http_options"] |= {"host": "127.0.0.1", "port": self.port}
        config["applications"][0]["deployments"][0]["num_replicas"] = replicas
        path = self.tmp / f"serve_{replicas}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.run(str(self.bin / "serve"), "deploy", str(path),
                 "--address", f"http://127.0.0.1:{self.dashboard}")  # fmt: skip
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the new replica count, all of them ready
            status = subprocess.run(
                [str(self.bin / "serve"), "status", "--address",
                 f"http://127.0.0.1:{self.dashboard}"],
                env=self.env, capture_output=True, text=True,
            ).stdout  # fmt: skip
            if f"RUNNING: {replicas}\n" in status and "status: HEALTHY" in status:
                return
            time.sleep(1)
        raise RuntimeError(f"{replicas} replicas did not come up:\n{status}")

    def stop(self) -> None:
        subprocess.run([str(self.bin / "ray"), "stop", "--force"], env=self.env,
                       capture_output=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-venv", type=Path, default=REPO_ROOT / ".venv-ray")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models-dir", type=Path, default=committed_models())
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    if wrk_missing():
        return 2
    if not (args.ray_venv / "bin" / "serve").is_file():
        print(f"error: no Ray in {args.ray_venv}: make .venv-ray/.installed", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths
    listing = write_requests(tmp, "png", [("/predict?variant=group", "image/png",
                                           sample_png(args.data_dir))])  # fmt: skip
    script = tmp / "mixed.lua"
    script.write_text(WRK_MIXED)
    best: dict[str, dict] = {}
    plain_port = free_port()
    plain = start_service(plain_port, args.models_dir)
    cluster = RayCluster(args.ray_venv, tmp)
    try:
        cluster.start()
        for round_ in range(args.rounds):
            for name in ("plain service", "Ray, 1 replica", "Ray, 2 replicas"):
                if name.startswith("Ray"):
                    cluster.deploy(int(name.split(", ")[1][0]))
                port = plain_port if name == "plain service" else cluster.port
                run_wrk_mixed(port, 8, 2, listing, script)  # warm-up
                row = run_wrk_mixed(port, 64, args.duration, listing, script)
                if name not in best or row["rps"] > best[name]["rps"]:
                    best[name] = row
                print(f"round {round_ + 1}: {name:<16} {row['rps']:7.0f} req/s  p50 "
                      f"{row['p50']:6.1f} ms  p99 {row['p99']:6.1f} ms  answers "
                      f"{row['statuses']}", flush=True)  # fmt: skip
    finally:
        cluster.stop()
        plain.terminate()
        plain.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| server | req/s | p50 ms | p99 ms |\n| --- | --- | --- | --- |")
    for name, row in best.items():
        print(f"| {name} | {row['rps']:,.0f} | {row['p50']:.1f} | {row['p99']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The serving frameworks a user would deploy instead of this service, started as
`../shared/bench/peers/README.md` says, each in its own virtual environment, on the committed fp32
group model. Used by `benchmarks.framework_peers`.

    python -m benchmarks.peers --install DIR   # one venv per framework under DIR (pip)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from devtools import REPO_ROOT
from devtools.servers import free_port, wait_for

PEERS_DIR = REPO_ROOT.parent / "shared" / "bench" / "peers"
# The versions measured, pinned as the peers' README pins them.
INSTALL = {
    "litserve": ["litserve==0.2.19", "onnxruntime", "pillow", "numpy", "python-multipart"],
    "bentoml": ["bentoml==1.4.40", "onnxruntime", "pillow", "numpy", "python-multipart"],
    "mlserver": ["mlserver==1.7.1", "onnxruntime", "numpy", "uvloop<0.22"],
    "kserve": ["kserve==0.21.0", "onnxruntime", "numpy"],
}
PNG, OIP = "PNG upload", "OIP tensor"  # the two workloads


@dataclass
class Peer:
    """One running configuration of a framework."""

    framework: str  # LitServe, BentoML, MLServer, KServe
    config: str  # e.g. "2 workers, batch 8"
    workload: str  # PNG or OIP
    port: int
    process: subprocess.Popen
    binary: bool = False  # takes the binary tensor extension
    polls_when_idle: bool = False  # paused (SIGSTOP) while another server is measured
    scratch: list[tempfile.TemporaryDirectory] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.framework} ({self.config})"

    def pause(self) -> None:
        if self.polls_when_idle:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.polls_when_idle:
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        for directory in self.scratch:
            directory.cleanup()


def _spawn(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """In its own process group (its workers are paused and stopped with it), quiet."""
    return subprocess.Popen(
        command, cwd=cwd, env={**os.environ, **env}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def start_litserve(venvs: Path, model: Path, workers: int, batch: int) -> Peer:
    port = free_port()
    command = [str(venvs / "litserve/bin/python"), "server.py", "--port", str(port),
               "--workers", str(workers), "--max-batch-size", str(batch),
               "--batch-timeout", "0.001"]  # fmt: skip
    process = _spawn(command, PEERS_DIR / "litserve", {"PEER_MODEL": str(model)})
    wait_for(port, "/health", process)
    config = f"{workers} workers, batch {batch}" if batch > 1 else f"{workers} workers, no batch"
    return Peer("LitServe", config, PNG, port, process, polls_when_idle=True)


def start_bentoml(venvs: Path, model: Path, workers: int) -> Peer:
    port = free_port()
    command = [str(venvs / "bentoml/bin/bentoml"), "serve", "service:MnistService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {"PEER_MODEL": str(model), "BENTO_WORKERS": str(workers), "BENTOML_DO_NOT_TRACK": "True"}
    process = _spawn(command, PEERS_DIR / "bentoml", env)
    wait_for(port, "/readyz", process)
    return Peer("BentoML", f"{workers} workers, adaptive batch 8", PNG, port, process)


def start_mlserver(venvs: Path, model: Path, workers: int, batch: int) -> Peer:
    port, folder = free_port(), tempfile.TemporaryDirectory(prefix="mlserver-")
    root = Path(folder.name)
    settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
                "parallel_workers": workers}  # fmt: skip
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = json.loads((PEERS_DIR / "mlserver/model-settings.json").read_text())
    model_settings["parameters"]["uri"] = str(model)
    model_settings["max_batch_size"] = batch
    (root / "group").mkdir()
    (root / "group/model-settings.json").write_text(json.dumps(model_settings))
    command = [str(venvs / "mlserver/bin/mlserver"), "start", str(root)]
    process = _spawn(command, PEERS_DIR, {"PYTHONPATH": str(PEERS_DIR / "mlserver")})
    wait_for(port, "/v2/models/group/ready", process)
    config = f"{workers} workers, adaptive batch {batch}" if batch > 1 else f"{workers} workers"
    return Peer("MLServer", config, OIP, port, process, scratch=[folder])


def start_kserve(venvs: Path, model: Path, workers: int) -> Peer:
    port = free_port()
    command = [str(venvs / "kserve/bin/python"), "server.py", "--http_port", str(port),
               "--workers", str(workers), "--enable_grpc", "false",
               "--enable_latency_logging", "false", "--log_config_file", "log_config.json"]  # fmt: skip
    process = _spawn(command, PEERS_DIR / "kserve", {"PEER_MODEL": str(model)})
    wait_for(port, "/v2/models/group/ready", process)
    return Peer("KServe", f"{workers} workers", OIP, port, process, binary=True)


def start_all(venvs: Path, model: Path) -> list[Peer]:
    """Every configuration the peers' README asks for: 1 and 2 workers, batching on and off
    where the framework has it (each framework's best is compared per client count)."""
    starters = [
        *(lambda w=w, b=b: start_litserve(venvs, model, w, b) for w in (1, 2) for b in (1, 8)),
        *(lambda w=w: start_bentoml(venvs, model, w) for w in (1, 2)),
        *(lambda w=w, b=b: start_mlserver(venvs, model, w, b) for w in (1, 2) for b in (1, 8)),
        *(lambda w=w: start_kserve(venvs, model, w) for w in (1, 2)),
    ]
    peers: list[Peer] = []
    try:
        for start in starters:
            peers.append(start())
            peers[-1].pause()
            print(f"started {peers[-1].name} on port {peers[-1].port}", flush=True)
    except BaseException:
        for peer in peers:
            peer.stop()
        raise
    return peers


def missing_venvs(venvs: Path) -> list[str]:
    return [name for name in INSTALL if not (venvs / name / "bin" / "python").is_file()]


def install(venvs: Path) -> None:
    for name, packages in INSTALL.items():
        print(f"installing {name} into {venvs / name}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venvs / name)], check=True)
        pip = [str(venvs / name / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *packages], check=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", type=Path, required=True, help="the venvs' directory")
    install(parser.parse_args().install)

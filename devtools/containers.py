"""The container engine behind the deployment test (`make test-deploy`): Docker where its daemon
answers, else podman behind its Docker-compatible API, so that the Compose file runs as written
through `docker compose` (or the v1 `docker-compose`) on either.

    python -m devtools.containers      # start the engine and build the images (cached layers)

Podman as Debian ships it needs three things Docker does not (each found running it here):
a `containers.conf` without default ulimits (containers in this sandbox may not set rlimits),
`--format docker` on builds (the default OCI format drops the Dockerfile's HEALTHCHECK), and,
when the base image is the debootstrap stand-in, the machine's CA bundle mounted into builds so
that pip reaches the package registry. Without a reachable image registry the Dockerfile's
`python:3.11-slim` is replaced by that stand-in (`devtools.base_image`); users keep theirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devtools import REPO_ROOT
from devtools.base_image import USERS_IMAGE, CannotBuild, stand_in_python_image

API_IMAGE = "mnist-normalization-api:latest"
TRAINER_IMAGE = "mnist-normalization-trainer:latest"
RAY_IMAGE = "mnist-normalization-api:ray"  # deploy/kuberay's image
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_SERVICE_START_S = 30.0


class EngineUnavailable(RuntimeError):
    """Neither Docker nor podman can run containers here; says what to install."""


@dataclass
class Engine:
    """One engine and what its clients need in their environment (DOCKER_HOST for Compose)."""

    name: str  # "docker" or "podman"
    env: dict[str, str] = field(default_factory=dict)
    compose_command: list[str] = field(default_factory=list)
    python_image: str = USERS_IMAGE

    def run(
        self, *args: str, check: bool = True, timeout: float = 600, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`docker ARGS` or `podman ARGS`, output captured; a failure raises with its output."""
        return _run([self.name, *args], {**self.env, **env}, check, timeout)

    def compose(
        self, project_dir: Path, *args: str, check: bool = True, timeout: float = 600, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Compose on `project_dir`'s docker-compose.yml, variables from `env`."""
        return _run(self.compose_argv(project_dir, *args), {**self.env, **env}, check, timeout)

    def compose_in_background(self, project_dir: Path, *args: str, **env: str) -> subprocess.Popen:
        """As `compose`, returning at once (output joined on stdout)."""
        return subprocess.Popen(
            self.compose_argv(project_dir, *args),
            env={**os.environ, **self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def compose_argv(self, project_dir: Path, *args: str) -> list[str]:
        compose_file = str(project_dir / "docker-compose.yml")
        return [
            *self.compose_command,
            "--project-directory",
            str(project_dir),
            "-f",
            compose_file,
            *args,
        ]

    def build(self, target: str, tag: str, **build_args: str) -> float:
        """Build the Dockerfile's `target` as `tag` (layers cached); seconds it took."""
        command = [self.name, "build", "--target", target, "-t", tag]
        command += ["--build-arg", f"PYTHON_IMAGE={self.python_image}"]
        for name, value in build_args.items():
            command += ["--build-arg", f"{name}={value}"]
        if self.name == "podman":
            command += ["--format", "docker"]
            if self.python_image != USERS_IMAGE and CA_BUNDLE.is_file():
                command += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        started = time.monotonic()
        print(f"building {tag} (target {target}, base {self.python_image})", flush=True)
        subprocess.run([*command, "."], cwd=REPO_ROOT, env={**os.environ, **self.env}, check=True)
        return time.monotonic() - started

    def health(self, container: str) -> str:
        """The container's health status. Podman without systemd schedules no healthchecks
        (there is no timer to run them), so here it runs the configured check once first."""
        if self.name == "podman":
            self.run("healthcheck", "run", container, check=False)
        return self.run("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()


def _run(
    command: list[str], env: dict[str, str], check: bool, timeout: float
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    """Docker if its daemon answers, else podman with its API on a socket of its own for the
    duration (stopped on exit). Raises EngineUnavailable when neither can run."""
    if shutil.which("docker") and _succeeds(["docker", "info"]):
        yield Engine("docker", compose_command=_compose_command(), python_image=USERS_IMAGE)
        return
    if not shutil.which("podman"):
        raise EngineUnavailable(
            "no container engine: neither a Docker daemon nor podman answers. Install Docker, "
            "or podman (Debian: apt-get install podman catatonit debootstrap docker-compose)."
        )
    with tempfile.TemporaryDirectory(prefix="mnist-podman-") as state:
        conf = Path(state) / "containers.conf"
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        socket_path = Path(state) / "podman.sock"
        env = {"CONTAINERS_CONF": str(conf), "DOCKER_HOST": f"unix://{socket_path}"}
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_socket(socket_path, service)
            podman = Engine("podman", env, _compose_command())
            podman.python_image = _python_image(podman)
            yield podman
        finally:
            service.terminate()
            service.wait(timeout=30)


def _compose_command() -> list[str]:
    if shutil.which("docker") and _succeeds(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise EngineUnavailable(
        "no Compose client: install Docker Compose v2 (`docker compose`) or the v1 client "
        "(Debian: apt-get install docker-compose)."
    )


def _python_image(podman: Engine) -> str:
    """The Dockerfile's own base image where a registry serves it, else the stand-in."""
    for attempt in (("image", "exists", USERS_IMAGE), ("pull", "-q", USERS_IMAGE)):
        if podman.run(*attempt, check=False, timeout=300).returncode == 0:
            return USERS_IMAGE
    try:
        return stand_in_python_image(podman.env)
    except CannotBuild as error:
        raise EngineUnavailable(str(error)) from error


def _wait_for_socket(path: Path, service: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _SERVICE_START_S
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise EngineUnavailable(f"`podman system service` exited with {service.returncode}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            return
        time.sleep(0.1)
    raise EngineUnavailable(f"podman's API did not open {path} within {_SERVICE_START_S:.0f} s")


def _succeeds(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, timeout=60).returncode == 0


def build_images(podman_or_docker: Engine) -> dict[str, float]:
    """The images Compose runs, as `docker compose build` tags them, and KubeRay's; seconds
    each."""
    return {
        API_IMAGE: podman_or_docker.build("serve", API_IMAGE),
        TRAINER_IMAGE: podman_or_docker.build("train", TRAINER_IMAGE),
        RAY_IMAGE: podman_or_docker.build("serve", RAY_IMAGE, WITH_RAY="1"),
    }


def main() -> int:
    try:
        with engine() as running:
            for image, seconds in build_images(running).items():
                print(f"{image}: {seconds:.0f} s", flush=True)
    except EngineUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

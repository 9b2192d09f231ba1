"""`python -m service.healthcheck`: the container's liveness probe (the Dockerfile's HEALTHCHECK
and docker-compose.yml's). Exits 0 when this container's `/health/live` answers 200; else 1,
saying why (`docker inspect` and `podman healthcheck run` show it).

A module rather than an inline `python -c "..."`: podman's Docker-compatible API (4.x, which
Debian ships) splits a healthcheck's arguments at spaces, which turned the one-line program into
`python -c import` and every container unhealthy. The probe sends a `Host` that
MNIST_ALLOWED_HOSTS accepts, so narrowing that list does not fail it.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from pydantic import ValidationError

from service.settings import Settings

TIMEOUT_S = 2.0


def probe_host(allowed_hosts: list[str]) -> str:
    """A Host header value that the service's TrustedHostMiddleware answers."""
    if "*" in allowed_hosts:
        return "127.0.0.1"
    first = allowed_hosts[0]
    return "healthcheck" + first[1:] if first.startswith("*.") else first


def check(settings: Settings) -> str | None:
    """None when /health/live answers 200, else why not."""
    url = f"http://127.0.0.1:{settings.port}/health/live"
    request = urllib.request.Request(url, headers={"Host": probe_host(settings.allowed_hosts)})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        return f"{url}: {error}"
    return None if status == 200 else f"{url} answered {status}"


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"unhealthy: invalid settings:\n{error}", file=sys.stderr)
        return 1
    problem = check(settings)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

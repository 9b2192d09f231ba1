"""The model-repository extension of the Open Inference Protocol (the paths Triton, KServe and
MLServer use): list every model version with its state, load, unload.

These change what the service serves, so:
- when MNIST_ADMIN_TOKEN is set they require `Authorization: Bearer <token>` (401 without one,
  403 with another; compared in constant time);
- unset, they answer only requests made on this machine (a loopback client) to a loopback name
  (localhost, 127.0.0.1, [::1]: a DNS-rebound name is refused): 403 otherwise;
- either way they refuse (403) what a web page of another site can make a browser send: an
  `Origin` other than the service's own, `Sec-Fetch-Site` other than same-origin / none, or a
  body typed text/plain or as a form (the CORS "simple requests" sent without a preflight).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from service.errors import Forbidden, Unauthorized
from service.rest.dependencies import ModelName, RepositoryDep
from service.rest.responses import ERROR_RESPONSES

_SAME_SITE_FETCHES = ("same-origin", "none")  # Sec-Fetch-Site of the page itself, or typed URLs
_CROSS_SITE = (
    "cross-site request refused: the model-repository endpoints answer no page of another origin"
)


async def require_admin(request: Request) -> None:
    refuse_cross_site(request)
    token = request.app.state.settings.admin_token
    if token is None:
        require_loopback(request)
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized(
            "this endpoint requires the header Authorization: Bearer <MNIST_ADMIN_TOKEN>."
        )
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise Forbidden("the bearer token does not match MNIST_ADMIN_TOKEN.")


def refuse_cross_site(request: Request) -> None:
    """Forbidden for what a page of another site can have a browser send (token or not)."""
    headers = request.headers
    fetch_site = headers.get("sec-fetch-site", "none").lower()
    if fetch_site not in _SAME_SITE_FETCHES:
        raise Forbidden(f"{_CROSS_SITE} (Sec-Fetch-Site: {fetch_site}); call them from a script.")
    origin = headers.get("origin")
    # An origin is a scheme, host and port: an https page is another origin than the http
    # service on the same host and port.
    here = (request.url.scheme, headers.get("host", "").lower())
    if origin is not None and _scheme_and_netloc(origin.lower()) != here:
        raise Forbidden(
            f"{_CROSS_SITE} (Origin: {origin}; this service: {here[0]}://{here[1]}); call "
            "them from a script, which sends no Origin."
        )
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise Forbidden(
            f"request refused: Content-Type {media_type} is what any web page may send; the "
            "model-repository endpoints take no body (or application/json)."
        )


def require_loopback(request: Request) -> None:
    """Forbidden unless the client is this machine and it asked for a loopback name."""
    client = request.client.host if request.client else "?"
    host = request.headers.get("host", "")
    if not (_is_loopback(client) and _is_loopback(_hostname(host))):
        raise Forbidden(
            "MNIST_ADMIN_TOKEN is unset, so the model-repository endpoints answer only requests "
            "made on this machine to localhost, 127.0.0.1 or [::1] (this one: from "
            f"{client} to {host or '?'}); set MNIST_ADMIN_TOKEN on the service and send "
            "Authorization: Bearer <token>."
        )


def _scheme_and_netloc(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed [IPv6] part
        return "", ""
    return parts.scheme, parts.netloc


def _hostname(host_header: str) -> str:
    """The Host header's name, without port or IPv6 brackets."""
    try:
        return urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return ""


def _is_loopback(name: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) or the name localhost."""
    if name.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


router = APIRouter(
    prefix="/v2/repository",
    tags=["Model repository"],
    dependencies=[Depends(require_admin)],
    responses={
        **ERROR_RESPONSES,
        401: {"description": "MNIST_ADMIN_TOKEN is set and no bearer token was sent."},
        403: {
            "description": "The bearer token is not MNIST_ADMIN_TOKEN; or no token is set and "
            "the request is not from this machine to a loopback name; or it comes from a web "
            "page of another origin (Origin, Sec-Fetch-Site) or carries a form or text body."
        },
        409: {"description": "Unload with several uvicorn workers (it would reach only one)."},
    },
)


@router.post("/index", summary="Every model version on disk, with its state")
async def index(repository: RepositoryDep) -> list[dict[str, Any]]:
    return repository.index()


class LoadParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        None,
        ge=1,
        description="Serve this version to requests naming none (promote a candidate, or roll "
        "back), whatever the promotion gate says; kept in models/<variant>/serving.json.",
    )


class LoadRequest(BaseModel):
    """Triton's repository extension: load parameters in `parameters`."""

    parameters: LoadParameters = Field(default_factory=LoadParameters)


@router.post(
    "/models/{model}/load",
    summary="Rescan and serve; with a version, make it the default (promote or roll back)",
)
async def load(
    repository: RepositoryDep, model: ModelName, request: LoadRequest | None = None
) -> dict[str, Any]:
    version = request.parameters.version if request else None
    if version is None:
        return {"name": model, "versions": await repository.load(model)}
    chosen = await repository.choose_version(model, version)
    return {"name": model, "versions": repository.serving_versions(model), **chosen}


@router.post("/models/{model}/unload", summary="Stop serving the model")
async def unload(repository: RepositoryDep, model: ModelName) -> dict[str, Any]:
    await repository.unload(model)
    return {"name": model, "versions": []}

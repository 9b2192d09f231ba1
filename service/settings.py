"""The service's settings: one class, every field documented, read from MNIST_* variables.

docs/configuration.md's environment-variable table is generated from this class (`python -m
service --print-env-table`), and a test checks that the table there matches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.repository.version_policy import VersionPolicy
from service.runtime.backends import BACKENDS
from service.runtime.batching import LONE_MAX_IMAGES
from service.runtime.cpus import available_cpus
from service.runtime.in_flight import OTHER_WORKERS_QUIET_S


class Settings(BaseSettings):
    """Configuration of the prediction service. Each field is read from `MNIST_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="MNIST_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 in containers).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="gRPC (Open Inference Protocol) port; 0 turns it off."
    )
    workers: int = Field(
        0,
        ge=0,
        description="uvicorn worker processes, each loading every model; 0: one per CPU the "
        "process may use (the container's CPU quota, else its CPU affinity).",
    )
    models_dir: Path = Field(
        Path("models"), description="Directory of models/<variant>/<version>/ with manifests."
    )
    # NoDecode: the variable is a plain comma-separated list, not JSON.
    variants: Annotated[list[str], NoDecode] = Field(
        [],
        description="Variants to serve, comma separated (e.g. group,layer); empty: every "
        "variant in the models directory.",
    )
    model_poll_s: float = Field(
        10.0,
        ge=0,
        description="Seconds between scans of the models directory for new or changed versions; "
        "0 turns polling off (then only POST /v2/repository/models/<variant>/load changes them).",
    )
    version_policy: str = Field(
        "latest",
        description="Versions served per variant: latest (= latest:1), latest:N or "
        "specific:V1,V2 (as TF Serving and Triton).",
    )
    promotion: Literal["gate", "always"] = Field(
        "gate",
        description="Which version requests naming none get: `gate`, a newer version only if "
        "it is no worse than the one it would replace on the evaluations both were measured "
        "on at export (else it is a candidate, reachable with version=N); `always`, the "
        "newest.",
    )
    promotion_tolerance: float = Field(
        0.1,
        ge=0,
        le=100,
        description="How many accuracy points (percent) below the default version a newer "
        "one may score on any evaluation and still take over, beyond the noise of the "
        "evaluation's sample (1.645 standard errors of the difference).",
    )
    canary_percent: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Share (percent) of the requests naming no version that a variant's newest "
        "candidate (held back by the promotion gate) answers instead of the default.",
    )
    shadow: bool = Field(
        False,
        description="Also run the requests naming no version on the variant's newest "
        "candidate in the background, answering from the default: agreement, latency and "
        "errors in /models and the metrics (only while the inference queue is under half "
        "its bound).",
    )
    feedback_dir: Path | None = Field(
        None,
        description="Where POST /feedback keeps corrections from users (the 28x28 model input, "
        "the right digit, variant, version and time; never the uploaded photo); unset: "
        "feedback is off (404).",
    )
    feedback_per_minute: int = Field(
        20, ge=1, description="Corrections one client address may send a minute (else 429)."
    )
    feedback_max_corrections: int = Field(
        100_000,
        ge=1,
        description="Corrections kept in MNIST_FEEDBACK_DIR at most (about 1.5 KB each); "
        "beyond, POST /feedback answers 503 until some are moved away (after training).",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token required by the /v2/repository endpoints (load, unload, "
        "index); unset: they answer only requests made on this machine to localhost, "
        "127.0.0.1 or [::1]. Requests from web pages of other origins are refused either way.",
    )
    # NoDecode: the variable is a plain comma-separated list, not JSON.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        ["*"],
        description="Host header values answered, comma separated (e.g. "
        "`localhost,127.0.0.1,[::1],mnist.example.com`; `*.example.com` for subdomains); any "
        "other Host gets 400 (against DNS rebinding). `*`: any, as containers and Kubernetes "
        "probes need (they reach the service by names and pod IPs not known in advance).",
    )
    digit_check: bool = Field(
        True,
        description="Score every picture for how much it looks like one digit, with the check "
        "in <models_dir>/digit_check (`looks_like_digit` in answers, `strict=true` refusing "
        "the rest); false, or no check there: answers without it.",
    )
    default_variant: str = Field(
        "", description="Variant used when a request names none; empty: the first served."
    )
    default_backend: str = Field("onnx", description="Backend used when a request names none.")
    default_precision: Literal["fastest", "fp32"] = Field(
        "fastest",
        description="Precision of a request naming none, on the onnx backend: `fastest`, the "
        "fastest model of the version that passed its accuracy gate at export (its INT8 twin, "
        "where it has one); `fp32`, the exported model itself.",
    )
    max_batch_size: int = Field(
        8,
        ge=1,
        le=1024,
        description="Largest merged inference batch; 1 turns micro-batching off. On a CPU an "
        "image costs least in batches of about 8 (docs/benchmarks.md); raise it for a GPU.",
    )
    max_batch_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long a batch waits for more requests after the first; 0: none (batches "
        "form while the previous one runs). Worth raising only where a bigger batch costs less "
        "per image (a GPU).",
    )
    max_upload_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (else 413): a 12-megapixel phone photo is "
        "3-12 MB.",
    )
    max_json_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        description="Largest JSON document: a /predict JSON body, or an Open Inference "
        "Protocol request's JSON (its binary tensors aside), else 413. Parsing JSON holds the "
        "GIL the event loop needs: larger pictures go as files or binary tensors.",
    )
    max_images_per_request: int = Field(
        64, ge=1, description="Most images one request may carry (else 413)."
    )
    max_image_pixels: int = Field(
        16_000_000,
        ge=1,
        description="Largest decoded image (width x height); checked before decoding (else 413).",
    )
    max_request_pixels: int = Field(
        48_000_000,
        ge=1,
        description="Most pixels (width x height, as declared) all images of one request may "
        "hold together; checked before each is decoded (else 413).",
    )
    max_digits_per_request: int = Field(
        256,
        ge=1,
        description="Most digits `/read` (and the Open Inference Protocol's number outputs) "
        "reads from all the pictures of one request together; a picture past it is answered "
        "with an error in its place (422 when no picture is left). Segmentation's cost grows "
        "with the digits it cuts apart.",
    )
    max_queued_images: int = Field(
        256,
        ge=1,
        description="Images admitted for inference and not yet answered (x3 for variant=all); "
        "a request beyond it gets 503 with Retry-After at once.",
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request not answered in time gets 504; its queued work is dropped.",
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest header block of a request (else 431 and the connection closed); "
        "browsers and HTTP libraries send well under 8 KB.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection that has not sent a complete request's headers this long "
        "after opening (or after the request's first byte) gets 408 and is closed.",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="On SIGTERM: readiness turns 503 at once, accepted requests finish, and the "
        "process exits within this many seconds.",
    )
    inference_threads: int = Field(
        1, ge=1, description="onnxruntime intra-op threads per model (keep cores for HTTP)."
    )
    inline_lone_requests: bool = Field(
        True,
        description=f"Infer a small request (up to {LONE_MAX_IMAGES} images) that finds the "
        "service idle at once "
        "on the event loop, without the hand-off to the inference thread (a lone client's "
        "latency); false: every request goes through the inference thread.",
    )
    lone_request_threads: int = Field(
        2,
        ge=1,
        description="onnxruntime threads for a lone request inferred on the event loop while no "
        f"other worker has had a request in flight for {OTHER_WORKERS_QUIET_S * 1000:g} ms: "
        "each operator is split over the "
        "idle cores (capped at the CPUs the process may use); 1: no second session.",
    )
    opentelemetry: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry traces, HTTP metrics and logs, sent to the "
        "providers configured in the process (e.g. FASTAPI_OTEL_AUTO_CONFIGURE=true with the "
        "OTEL_* variables); off: FastAPI does not even look for them, a cost on every request. "
        "The service's own metrics are at /metrics either way.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the service and uvicorn."
    )

    @property
    def lone_session_threads(self) -> int:
        """Threads of the lone-request session: 1 (none of its own) when lone requests are
        not inferred on the event loop, else MNIST_LONE_REQUEST_THREADS within the CPUs."""
        if not self.inline_lone_requests:
            return 1
        return min(self.lone_request_threads, available_cpus())

    @field_validator("variants", mode="before")
    @classmethod
    def _split_variants(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """Always comma separated: `[::1]` starts an IPv6 entry, not a JSON list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if "*" in pattern[1:] or (pattern.startswith("*") and pattern[:2] not in ("*", "*.")):
                raise ValueError(f"{pattern!r}: a wildcard is * alone or *.domain (*.example.com)")
        return value or ["*"]

    @field_validator("version_policy")
    @classmethod
    def _valid_policy(cls, value: str) -> str:
        VersionPolicy.parse(value)  # ValueError says what the spellings are
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("default_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}: choose one of {', '.join(BACKENDS)}")
        return value

    @model_validator(mode="after")
    def _default_variant_is_served(self) -> Settings:
        if self.variants and self.default_variant and self.default_variant not in self.variants:
            raise ValueError(
                f"MNIST_DEFAULT_VARIANT={self.default_variant} is not among "
                f"MNIST_VARIANTS={','.join(self.variants)}"
            )
        return self


def env_table() -> str:
    """Markdown table of every setting: variable, default, description."""
    rows = ["| variable | default | description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else field.default
        if isinstance(default, list):
            default = ",".join(default)
        rows.append(f"| `MNIST_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows)

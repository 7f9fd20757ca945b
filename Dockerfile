# The lift-critic image: Ray Serve + the critic + the shipped trained critic (models/lift-critic-tiny),
# the image k8s/rayservice.yaml runs. One Dockerfile, two builds (same Python, same Ray: one cluster):
#
#   docker build -t ghcr.io/lift-critic/lift-critic:0.1.0 .                       # CPU (head, CPU replicas)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#                -t ghcr.io/lift-critic/lift-critic:0.1.0-cuda .                  # GPU replicas
#
# The CUDA build takes torch's CUDA wheels (they carry the CUDA runtime; the node's driver comes in
# through the NVIDIA container toolkit). Real checkpoints are not baked in: mount them (k8s/README.md).
#
#   docker run --rm --shm-size=2g ghcr.io/lift-critic/lift-critic:0.1.0 make demo   # the demo, inside
#   docker run --rm -p 8000:8000 -p 9000:9000 ghcr.io/lift-critic/lift-critic:0.1.0 \
#       lift-critic serve --host 0.0.0.0                                         # the service
FROM python:3.11-slim-bookworm

# torch's wheel index: the CPU build by default (a bare torch requirement would pull CUDA wheels)
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=serving,training

# make runs the repo's own set-up; wget is what KubeRay's probes call
RUN apt-get update \
    && apt-get install -y --no-install-recommends make wget \
    && rm -rf /var/lib/apt/lists/*

# VENV: the Makefile installs into the image's own Python (/usr/local/bin stays on the PATH of the
# login shell KubeRay starts Ray in, where a virtualenv's would not); `make demo` reads it too
ENV VENV=/usr/local \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app
COPY pyproject.toml Makefile README.md ./
COPY contract contract
COPY critic critic
COPY serving serving
COPY clients clients
COPY trainer trainer
COPY models models

# `make install` (pinned torch first, then the project, editable) and `make models` (the tiny
# models `make demo` scores with): `make demo` inside the image has nothing left to build
RUN PIP_INDEX_URL="$TORCH_INDEX" PIP_EXTRA_INDEX_URL=https://pypi.org/simple make install models \
    && python -c "import contract.video, critic, serving.app, clients.grpc"

EXPOSE 8000 9000
CMD ["lift-critic", "serve", "--host", "0.0.0.0"]

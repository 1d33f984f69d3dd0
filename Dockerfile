# ddpm-pipeline: the DVC pipeline with CUDA-capable PyTorch (PyPI's torch wheels carry their CUDA libraries;
# run with `docker run --gpus all --ipc=host` on a host with the NVIDIA driver and container toolkit; --ipc=host
# (or --shm-size=8g) gives the DataLoader workers and NCCL more than Docker's 64 MiB of /dev/shm: docs/docker.md).
FROM python:3.11.7-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 ddpm

USER ddpm
WORKDIR /home/ddpm/app

# Dependencies first (cached while only the code changes), then the project (with .git: DVC needs it).
COPY --chown=ddpm:ddpm pyproject.toml requirements.lock requirements-fid.txt README.md ./
COPY --chown=ddpm:ddpm scripts/ensure-venv.sh scripts/
COPY --chown=ddpm:ddpm src/ddpm/__init__.py src/ddpm/
RUN bash scripts/ensure-venv.sh
COPY --chown=ddpm:ddpm . .

ENV PATH=/home/ddpm/app/.venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib
CMD ["dvc", "repro"]

# syntax=docker/dockerfile:1
# zego-exporter image: docker build --build-arg VERSION=0.1.0 -t zego-exporter .
# Any builder works (BuildKit, the classic builder, podman/buildah): CI builds it with podman
# (scripts/build-image.sh).

# Build stage: zego-exporter[webconfig] and exactly its dependency closure, installed into a
# virtual environment that the runtime stage copies whole.
FROM python:3.12-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY zego_exporter/ zego_exporter/
# --without-pip, and the base image's pip installs into it: the virtual environment carries no
# pip, no pip cache and no wheel files. ("./[webconfig]", not ".[webconfig]": hadolint takes
# the latter for an unpinned package.)
RUN python -m venv --without-pip /opt/zego-exporter \
    && pip --python /opt/zego-exporter/bin/python install --no-cache-dir "./[webconfig]"

# Runtime stage: the base image plus that virtual environment; no compiler, no build files.
FROM python:3.12-slim

ARG VERSION=dev
ARG SOURCE=""
LABEL org.opencontainers.image.title="zego-exporter" \
      org.opencontainers.image.description="Prometheus exporter for ZEGOCLOUD Digital Human stream tasks" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# MALLOC_MMAP_THRESHOLD_: glibc hands large scrape buffers back to the system instead of
# keeping them (measured at 100,000 tasks: 1.6 -> 1.3 KB per task at rest;
# docs/performance.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    PATH="/opt/zego-exporter/bin:$PATH" \
    ZEGO_STORAGE_PATH=/var/lib/zego-exporter/zego-exporter.db

# COPY --from rather than a RUN --mount from the build stage: any builder does it (no BuildKit
# needed), and buildah 1.28 (Debian 12, CI) fails such a mount when the stage comes from its
# layer cache.
COPY --from=build /opt/zego-exporter /opt/zego-exporter

# --storage.path (ZEGO_STORAGE_PATH above): the SQLite file lives in this directory, owned by
# the user below. Mount a volume here to keep it across containers, not just restarts.
RUN install -d -o 65534 -g 65534 -m 0700 /var/lib/zego-exporter

# nobody:nogroup. A secret file mounted into the container must be readable by uid 65534.
USER 65534:65534

EXPOSE 9877

# Plain HTTP on the default address only: with --web.listen-address on another port, or with
# TLS from --web.config.file, override it (docker run --health-cmd, compose healthcheck:).
# /-/healthy needs no basic auth. Kubernetes ignores this and uses its own probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=4)"]

ENTRYPOINT ["zego-exporter"]
CMD ["serve"]

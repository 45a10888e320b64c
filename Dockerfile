# syntax=docker/dockerfile:1
# One image, many roles: docker run afterimage receiver|worker|poller|up|simulate|...
# Every Python package comes at the version requirements.lock pins (scripts/lock makes it).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY afterimage ./afterimage
COPY receiver ./receiver
COPY worker ./worker
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint requirements.lock .

FROM python:3.11-slim AS runtime
# The Debian packages follow the base image's release and its security updates; exact pins
# would break the build each time Debian replaces a version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 afterimage \
 && useradd --create-home --uid 10001 --gid 10001 afterimage \
 && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /wheels /wheels
# Only the wheels built from the lock, nothing from an index.
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/afterimage-*.whl \
 && rm -rf /wheels
COPY deploy/entrypoint.sh /usr/local/bin/afterimage-entrypoint
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
ENV AFTERIMAGE_DATA_DIR=/data \
    AFTERIMAGE_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["tini", "--", "afterimage-entrypoint"]
CMD ["up"]

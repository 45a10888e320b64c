# syntax=docker/dockerfile:1
# One image, many roles: docker run afterimage receiver|worker|poller|up|simulate|...

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY afterimage ./afterimage
COPY receiver ./receiver
COPY worker ./worker
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 afterimage \
 && mkdir -p /data && chown afterimage /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY deploy/entrypoint.sh /usr/local/bin/afterimage-entrypoint
USER afterimage
WORKDIR /data
ENV AFTERIMAGE_DATA_DIR=/data \
    AFTERIMAGE_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["tini", "--", "afterimage-entrypoint"]
CMD ["up"]

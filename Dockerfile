# The orchestrator image: one Faust worker per container (docker-compose*.yml scale it).
# The Python environment is installed from uv.lock (uv sync --frozen), the code is the whole
# checkout minus what .dockerignore leaves out (tests, benchmarks, docs, the local stack).
#   docker build -t saga-orchestrator .                       official Python base
#   docker build --build-arg BASE_IMAGE=saga-stack/python-base:bookworm -t saga-orchestrator .
#                                                             a base built by `make images`
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG UV_VERSION=0.13.9
# The release and commit (stack/deploy.sh passes pyproject.toml's version and git's commit):
# the image's labels, and BUILD_COMMIT for /health and saga_build_info.
ARG VERSION=unknown
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="saga-orchestrator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
ENV BUILD_COMMIT=${COMMIT} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH

# Extra CA certificates of the building machine (docker/certs/*.crt, copied by `make images`
# from /usr/local/share/ca-certificates; usually none): a TLS-inspecting proxy between the
# build and PyPI needs them.
COPY docker/certs/ /usr/local/share/ca-certificates/
RUN if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then update-ca-certificates >/dev/null; fi \
 && python3 -m venv /opt/uv \
 && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt /opt/uv/bin/uv sync --frozen --no-dev --no-install-project \
        --no-cache --python "$(command -v python3)"
COPY . .
RUN SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt /opt/uv/bin/uv sync --frozen --no-dev --no-cache \
        --python "$(command -v python3)" \
 && python -c "import orchestrator.worker, simulators.participants" \
 && echo 'saga:x:10001:10001:saga orchestrator:/app:/usr/sbin/nologin' >>/etc/passwd \
 && echo 'saga:x:10001:' >>/etc/group \
 && mkdir -p /data && chown 10001:10001 /data \
 && chmod 755 docker/entrypoint.sh

# The worker's table store (RocksDB); the changelog in Kafka is the source of truth, so a
# container that loses it recovers from Kafka.
ENV DATADIR=/data WEB_BIND=0.0.0.0 WEB_PORT=6066
USER 10001
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["docker/entrypoint.sh"]
CMD ["worker"]

# mcp-bastion in a container: `bastion serve` by default (`docker run IMAGE gateway` for the
# gateway). Runs as an unprivileged user with a read-only root filesystem: it writes only to
# /data (SQLite, secret.key; a volume) and /tmp (a tmpfs). See docs/deployment.md.

# -- build: a virtual environment with bastion and its dependencies ----------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/bastion \
 && /opt/bastion/bin/pip install . \
 && /opt/bastion/bin/pip uninstall --yes pip

# -- run: the same base, the environment copied over, nothing else -----------------------------
FROM python:3.11-slim
RUN groupadd --system --gid 10001 bastion \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin bastion \
 && install --directory --owner=10001 --group=10001 --mode=0700 /data
COPY --from=build /opt/bastion /opt/bastion
# No .pyc written at run time (the root filesystem is read-only; pip compiled them at build).
# Listen on every interface of the container: the published port decides who reaches it.
ENV PATH=/opt/bastion/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BASTION_DATA_DIR=/data \
    BASTION_HOST=0.0.0.0 \
    BASTION_GATEWAY__HOST=0.0.0.0
USER 10001:10001
WORKDIR /data
VOLUME ["/data", "/tmp"]
EXPOSE 8000 8001
# slim has no curl: python's urllib asks /healthz (HEALTHCHECK_PORT: 8001 for the gateway).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEALTHCHECK_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["bastion"]
CMD ["serve"]

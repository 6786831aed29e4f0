# bullmq-chatops: `chatops serve` (HTTP mode, port 3000) as a non-root user.
# Build stage: the locked dependencies (uv.lock), then the project itself.
FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md manifest.yml config.example.yml ./
COPY bot ./bot
COPY commands ./commands
RUN uv sync --frozen --no-dev

# Runtime stage: tini as PID 1 so SIGTERM reaches the bot (it stops accepting, finishes or
# checkpoints what runs, and releases its locks); git and ssh for deploys and SSH workers.
FROM python:3.11-slim-bookworm
# Debian's security updates move these versions: pinning them would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini git openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 chatops \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/chatops chatops
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CHATOPS_STATE_DIR=/home/chatops/state \
    CHATOPS_LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"]
ENTRYPOINT ["tini", "--", "chatops"]
CMD ["serve", "--port", "3000"]

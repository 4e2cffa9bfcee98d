# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target server -t edgefleet .        # controller + southbound (edgefleet …)
#   docker build --target agent  -t edgefleet-agent .  # the device agent (edgefleet-agent)
# Both run as an unprivileged user and work with a read-only root filesystem.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY controller ./controller
COPY southbound ./southbound
RUN python -m venv /venv-server && /venv-server/bin/pip install --no-cache-dir '.[server]' \
 && python -m venv /venv-agent && /venv-agent/bin/pip install --no-cache-dir '.[agent]'

FROM python:3.11-slim AS server
# `serve` keeps its SQLite file and devices' files in /var/lib/edgefleet, a volume the
# user owns: the working directory of a non-root user in / is not writable. In
# Kubernetes mode the chart sets EDGEFLEET_DB_URL to MySQL and the file store to its
# claim or bucket, and nothing is written there.
RUN groupadd --system --gid 10001 edgefleet \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
        --shell /usr/sbin/nologin edgefleet \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/edgefleet
COPY --from=build /venv-server /venv
ENV PATH=/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    EDGEFLEET_DB_URL=sqlite+aiosqlite:////var/lib/edgefleet/edgefleet.db \
    EDGEFLEET_FILES_DIR=/var/lib/edgefleet/files
WORKDIR /var/lib/edgefleet
USER 10001
VOLUME ["/var/lib/edgefleet"]
# 8080 REST API, 9090 devices (/ws), 9091 internal API, 9092 /metrics and probes.
EXPOSE 8080 9090 9091 9092
ENTRYPOINT ["edgefleet"]
CMD ["serve", "--api-host", "0.0.0.0", "--ws-host", "0.0.0.0"]

FROM python:3.11-slim AS agent
RUN useradd --system --uid 10002 --create-home --home-dir /var/lib/edgefleet-agent \
        --shell /usr/sbin/nologin edgefleet-agent
COPY --from=build /venv-agent /venv
ENV PATH=/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    EDGEFLEET_AGENT_STATE_DIR=/var/lib/edgefleet-agent/state \
    EDGEFLEET_AGENT_LOG_DIR=/var/lib/edgefleet-agent/log \
    EDGEFLEET_AGENT_SPOOL_DIR=/var/lib/edgefleet-agent/spool
USER 10002
VOLUME ["/var/lib/edgefleet-agent"]
ENTRYPOINT ["edgefleet-agent"]

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
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin edgefleet
COPY --from=build /venv-server /venv
ENV PATH=/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080 9090 9091
ENTRYPOINT ["edgefleet"]
CMD ["serve", "--api-host", "0.0.0.0", "--ws-host", "0.0.0.0"]

FROM python:3.11-slim AS agent
RUN useradd --system --uid 10002 --create-home --home-dir /var/lib/edgefleet-agent \
        --shell /usr/sbin/nologin edgefleet-agent
COPY --from=build /venv-agent /venv
ENV PATH=/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    EDGEFLEET_AGENT_STATE_DIR=/var/lib/edgefleet-agent/state \
    EDGEFLEET_AGENT_LOG_DIR=/var/lib/edgefleet-agent/log
USER 10002
VOLUME ["/var/lib/edgefleet-agent"]
ENTRYPOINT ["edgefleet-agent"]

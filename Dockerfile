# syntax=docker/dockerfile:1
# Image of the ingestion tracker, built with the repository root as context.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY migrations ./migrations

# A regular (non-editable) install, so the venv carries the service and the Alembic
# migrations and needs no source tree at run time. The dev extras stay out.
RUN /opt/venv/bin/pip install .


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    TRACKER_HOST=0.0.0.0 \
    TRACKER_PORT=8080 \
    TRACKER_LOG_FORMAT=json

RUN groupadd --system --gid 10001 tracker \
    && useradd --system --uid 10001 --gid tracker --create-home \
        --shell /usr/sbin/nologin tracker

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/tracker

EXPOSE 8080

# Serving on 0.0.0.0 requires TRACKER_API_TOKENS and TRACKER_WORKER_TOKENS. Without
# DATABASE_URL the service falls back to an embedded PostgreSQL under
# /home/tracker/.local/share/ingestion-tracker.
CMD ["ingestion-tracker", "serve", "--host", "0.0.0.0", "--port", "8080"]

# The image Prefect workers run backlake flows in (and the dashboard service in infra/).
# Build from the repo root:  docker build -t backlake:latest .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    BACKLAKE_LAKE_URI=/data/lake

RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/backlake

# dependencies first (cached while only code changes)
COPY requirements-runtime.lock ./
RUN pip install -r requirements-runtime.lock

COPY pyproject.toml README.md prefect.yaml ./
COPY lib ./lib
COPY flows ./flows
COPY dashboards ./dashboards
RUN pip install --no-deps -e . \
    && python -c "import backlake, flows.cli, duckdb; from backlake.lake.sql import extension_path; assert extension_path('delta')"

ARG BACKLAKE_CODE_VERSION=docker
ENV BACKLAKE_CODE_VERSION=${BACKLAKE_CODE_VERSION}

EXPOSE 5006
CMD ["backlake", "--help"]

# First version: one image for the webserver, the daemon or a one-off materialization (operations, issue 5,
# adds start-up backup reload and the entrypoint script). Configure with --env-file.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/secmetrics \
    DAGSTER_HOME=/opt/dagster/home

WORKDIR /opt/secmetrics
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

COPY secmetrics_dagster ./secmetrics_dagster
COPY workspace.yaml dagster.yaml README.md ./

RUN useradd --create-home --uid 10001 secmetrics \
    && mkdir -p "$DAGSTER_HOME" /opt/secmetrics/data \
    && cp dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && chown -R secmetrics:secmetrics "$DAGSTER_HOME" /opt/secmetrics/data
USER secmetrics

EXPOSE 3000
# Examples:
#   docker run --env-file .env -p 3000:3000 secmetrics-dagster dagster-webserver -h 0.0.0.0 -p 3000 -w workspace.yaml
#   docker run --env-file .env secmetrics-dagster dagster-daemon run -w workspace.yaml
CMD ["dagster", "asset", "materialize", "-m", "secmetrics_dagster", "--select", "*"]

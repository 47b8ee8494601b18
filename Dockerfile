# One image for every role, chosen by the entrypoint's first argument (secmetrics_dagster/entrypoint.py):
#   docker run --env-file .env -p 3000:3000 secmetrics-dagster webserver   # the UI, on 0.0.0.0:3000
#   docker run --env-file .env secmetrics-dagster daemon                   # schedule, sensors, run queue, freshness
#   docker run --env-file .env secmetrics-dagster materialize              # one-off collection of every asset (default)
#   docker run --env-file .env secmetrics-dagster restore [TAG ...]        # reload the last S3 backups
# Configured only by environment variables (README, "Running in production"): DAGSTER_PG_* select the
# PostgreSQL instance, RESTORE_ON_START=true reloads the backups when the daemon or a one-off run starts.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/opt/secmetrics \
    DAGSTER_HOME=/opt/dagster/home \
    COLLECTION_SPOOL_DIR=/opt/secmetrics/spool

WORKDIR /opt/secmetrics

# Dependencies first (their layer survives code changes): exactly the hashed versions of the lock file.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml workspace.yaml dagster.yaml celery.yaml README.md ./
COPY secmetrics_dagster ./secmetrics_dagster

# Never run as root. DAGSTER_HOME, the data directory and the spool may be volumes owned by this user.
RUN useradd --create-home --uid 10001 --user-group secmetrics \
    && mkdir -p "$DAGSTER_HOME" /opt/secmetrics/data /opt/secmetrics/spool \
    && chown -R secmetrics:secmetrics "$DAGSTER_HOME" /opt/secmetrics/data /opt/secmetrics/spool
USER secmetrics

EXPOSE 3000
ENTRYPOINT ["python", "-m", "secmetrics_dagster.entrypoint"]
CMD ["materialize"]

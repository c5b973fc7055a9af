# mesoscan: the same install as the README (pip install of this project) on a slim base,
# served by gunicorn as a non-root user. Data (SQLite database, photos, secret key) in /data.
#
#   docker build -t mesoscan .
#   docker run -p 8000:8000 -v mesoscan-data:/data mesoscan
#   docker run --rm -v mesoscan-data:/data mesoscan mesoscan user create --clinic "My clinic" --email me@example.org --create-clinic
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MESOSCAN_MODELS_DIR=/app/models \
    MESOSCAN_DATA_DIR=/data \
    MESOSCAN_BIND=0.0.0.0:8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY service ./service
COPY models ./models
COPY sample_images ./sample_images
RUN pip install . \
    && useradd --create-home --uid 10001 mesoscan \
    && mkdir -p /data && chown mesoscan /data

USER mesoscan
VOLUME ["/data"]
EXPOSE 8000

# Liveness without curl: the image has Python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# Workers: one per core (WEB_CONCURRENCY overrides); request timeout MESOSCAN_TIMEOUT (120 s).
CMD ["gunicorn", "-c", "/app/service/gunicorn.conf.py", "service.app:create_app()"]

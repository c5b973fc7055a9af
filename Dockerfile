# mesoscan: the same install as the README (pip install of this project), on a slim base.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MESOSCAN_MODELS_DIR=/app/models \
    MESOSCAN_DATA_DIR=/data

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
ENTRYPOINT ["mesoscan"]
CMD ["analyze", "/app/sample_images/astronaut_render.jpg"]

# Conveyor Streaming service: `docker build -t conveyor-streaming .`
# `docker run -p 8000:8000 conveyor-streaming`, then http://127.0.0.1:8000/ (the playground).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 conveyor
WORKDIR /srv/conveyor

COPY pyproject.toml README.md ./
COPY conveyor_core ./conveyor_core
COPY conveyor ./conveyor
COPY app ./app
# EXTRAS=service,ray for Ray stages (docker-compose's ray profile builds it so)
ARG EXTRAS=service
RUN pip install ".[${EXTRAS}]"

USER conveyor
ENV CONVEYOR_HOST=0.0.0.0 \
    CONVEYOR_PORT=8000 \
    CONVEYOR_LOG_LEVEL=info
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CONVEYOR_PORT', '8000') + '/healthz', timeout=2)"]

CMD ["conveyor", "serve"]

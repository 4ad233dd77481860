# Conveyor Streaming service: `docker build -t conveyor-streaming .`
# `docker run -p 8000:8000 conveyor-streaming`, then http://127.0.0.1:8000/ (the playground).
# Your own pipelines: a `FROM conveyor-streaming` image of yours (examples/docker/Dockerfile), or
# a folder mounted into the container (README, "Deployment").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 conveyor
WORKDIR /srv/conveyor

# The dependencies first, read from pyproject.toml alone: this layer is built again only when
# they change, not at every change of the code.
COPY pyproject.toml ./
# EXTRAS=service,ray for Ray stages (docker-compose's ray profile builds it so)
ARG EXTRAS=service
RUN python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + [r for e in os.environ.get("EXTRAS", "service").split(",") for r in p["optional-dependencies"][e.strip()]]))' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code (installed as the `conveyor_service` package and the `conveyor` command), which
# needs nothing more: `pip check` fails the build if the layer above missed a dependency.
COPY README.md LICENSE ./
COPY conveyor_core ./conveyor_core
COPY conveyor ./conveyor
COPY app ./app
RUN pip install --no-deps . && pip check

USER conveyor
ENV CONVEYOR_HOST=0.0.0.0 \
    CONVEYOR_PORT=8000 \
    CONVEYOR_LOG_LEVEL=info
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CONVEYOR_PORT', '8000') + '/healthz', timeout=2)"]

CMD ["conveyor", "serve"]

# syntax=docker/dockerfile:1
# One image for every service of docker-compose.yml: the venue (`mock-venue serve`), the monitor
# (`orderbus watch`) and the example strategies (`python -m examples.*`). docs/deployment.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The library first, so that its layer is reused while only the examples change.
COPY pyproject.toml README.md ./
COPY ports ports
COPY bus bus
COPY mock_venue mock_venue
RUN pip install .

# Run from /app: `python -m examples.market_maker`, `--config examples/venue.yaml`.
COPY examples examples

# Not root. The venue's journal lives in /var/lib/orderbus (a volume in docker-compose.yml).
RUN useradd --system --uid 10001 --no-create-home orderbus \
    && mkdir -p /var/lib/orderbus \
    && chown orderbus /var/lib/orderbus
USER orderbus

EXPOSE 5555 5556 5557
CMD ["mock-venue", "serve", "--command", "tcp://0.0.0.0:5555", "--events", "tcp://0.0.0.0:5556", \
     "--control", "tcp://0.0.0.0:5557", "--config", "examples/venue.yaml"]

# syntax=docker/dockerfile:1
# One image for every service of docker-compose.yml: the keys step (`orderbus keys new`), the venue
# (`mock-venue serve`), the monitor (`orderbus watch`) and the example strategies
# (`python -m examples.*`). docs/deployment.md.
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

# Not root. The venue's journal lives in /var/lib/orderbus, the CURVE keys in /keys (volumes in
# docker-compose.yml). Both belong to this user because an empty volume takes the owner and mode of
# the image's directory it is mounted on: the keys step can write there, and only this user reads.
RUN useradd --system --uid 10001 --no-create-home orderbus \
    && mkdir -p /var/lib/orderbus /keys/venue /keys/admin \
    && chown orderbus /var/lib/orderbus /keys /keys/venue /keys/admin \
    && chmod 0700 /keys /keys/venue /keys/admin
USER orderbus

# Command and events only: the control endpoint (faults, fills, crash) stays inside the container.
EXPOSE 5555 5556
# CURVE on every channel, with the keys where docker-compose.yml's `keys` step writes them
# (docs/deployment.md): without them the venue refuses to start rather than serve plaintext.
CMD ["mock-venue", "serve", "--command", "tcp://0.0.0.0:5555", "--events", "tcp://0.0.0.0:5556", \
     "--control", "tcp://127.0.0.1:5557", "--config", "examples/venue.yaml", \
     "--server-key", "/keys/venue/venue.key_secret", "--entitlements", "/keys/venue/entitlements.yaml"]

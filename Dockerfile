# hls.js for the web player (api/player.py serves it from node_modules; no CDN): production dependencies only
FROM node:20-bookworm-slim AS player-deps
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# The image every framelog service runs (api, stage workers, sinks, and the nginx CDN edges:
# `framelog edge serve` renders their config and needs nginx with the cache_purge module).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg nginx libnginx-mod-http-cache-purge \
    && rm -rf /var/lib/apt/lists/*
# FRAMELOG_STATE_DIR, writable by the unprivileged user (a fresh named volume copies this ownership)
RUN mkdir -p /var/lib/framelog && chown nobody:nogroup /var/lib/framelog
WORKDIR /app
COPY . /app
COPY --from=player-deps /web/node_modules /app/node_modules
RUN pip install --no-cache-dir -e ./client -e .      # framelog-client (client/) first: framelog depends on it
USER nobody

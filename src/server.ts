import type { FastifyInstance } from 'fastify';
import { sql, type Kysely } from 'kysely';
import { Type } from '@sinclair/typebox';
import type { Runtime } from './runtime.js';
import { createHttpApp } from './shared/http/app.js';
import { migrationsApplied } from './shared/postgres/migrations.js';
import { authPlugin } from './shared/auth/plugin.js';
import { createTokenVerifier, type TokenVerifier } from './shared/auth/keys.js';
import { createWriteSide, type WriteSide } from './write/writeSide.js';
import { writeApi } from './write/plugin.js';
import { startProjector } from './projections/projector.js';
import { readApi } from './read/plugin.js';
import { PROCESS_MANAGER_FILTER, PROCESS_MANAGER_NAME, startProcessManager } from './write/transfers/processManager.js';
import { TransferAdmission } from './write/transfers/admission.js';
import { keyedCommandContext } from './write/http.js';
import { securityPlugin, unverifiedTokenReaderForBenchmark } from './shared/security/plugin.js';
import { hardenedServerOptions } from './shared/security/hardening.js';
import { withTimeout } from './shared/timeout.js';

export type Role = 'write-api' | 'read-api' | 'projector' | 'process-manager';
export const ROLES: readonly Role[] = ['write-api', 'read-api', 'projector', 'process-manager'];
/** A readiness probe answers within its orchestrator's timeout even while the event store hangs. */
const READY_CHECK_TIMEOUT_MS = 2_000;

/** A background worker started with the process and stopped, bounded, at shutdown. */
export interface Worker {
  name: string;
  /** Health details; `ok: false` makes readiness fail. */
  health(): { ok: boolean; detail?: Record<string, unknown> };
  stop(): Promise<void>;
}

export interface Ledger {
  app: FastifyInstance;
  workers: Worker[];
  write: WriteSide;
}

export interface LedgerOptions {
  /** Tests pass their own verifier; otherwise it follows the JWT_* configuration. */
  verifier?: TokenVerifier;
  /** bench/security-overhead.bench.ts only: no signature check, rate limit, cache or hardening. Never set from the environment. */
  /**
   * Benchmark only, never reachable from the environment: no signature check and no rate limiter,
   * everything else as in production, to measure what authentication and rate limiting cost.
   */
  authAndRateLimitDisabledForBenchmark?: boolean;
}

/**
 * Builds the HTTP app for the given roles. Every process serves /health and /docs, so a projector or
 * process manager on its own still answers its probes.
 */
export async function buildLedger(runtime: Runtime, roles: readonly Role[], options: LedgerOptions = {}): Promise<Ledger> {
  const { config } = runtime;
  const app = await createHttpApp({
    logger: runtime.logger,
    bodyLimitBytes: config.BODY_LIMIT_BYTES,
    requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
    title: 'Ledger API',
    serverOptions: hardenedServerOptions,
  });
  const workers: Worker[] = [];
  app.decorate('runtime', runtime);
  await app.register(securityPlugin, { config, logger: runtime.logger, rateLimit: !options.authAndRateLimitDisabledForBenchmark, idempotencyScope: keyedCommandContext });
  await app.register(authPlugin, { verifier: options.verifier ?? (options.authAndRateLimitDisabledForBenchmark ? unverifiedTokenReaderForBenchmark : createTokenVerifier(config)) });
  const write = createWriteSide(runtime.store, { retryLimit: config.COMMAND_RETRY_LIMIT });

  app.get('/health/live', { schema: { hide: true, response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }));
  app.get('/health/ready', { schema: { hide: true } }, async (_request, reply) => {
    const checks: Record<string, unknown> = {};
    let ready = true;
    const [migrated, eventStoreAnswered] = await Promise.all([
      withTimeout(sql`select 1`.execute(runtime.db).then(() => migrationsApplied(runtime.db as never)), READY_CHECK_TIMEOUT_MS).catch(() => undefined),
      // The event store itself, whichever it is: on EventStoreDB the database check says nothing of it.
      withTimeout(runtime.store.headPosition(), READY_CHECK_TIMEOUT_MS).then(() => true, () => false),
    ]);
    checks.database = migrated === undefined ? 'unreachable' : 'ok';
    if (migrated !== undefined) checks.migrations = migrated ? 'ok' : 'pending';
    ready &&= migrated === true;
    checks.eventStore = eventStoreAnswered ? 'ok' : 'unreachable';
    // The query API serves the read models from PostgreSQL without the event store (only its audit
    // routes read it), so an event-store outage does not take it out of traffic.
    if (roles.some((role) => role !== 'read-api')) ready &&= eventStoreAnswered;
    checks.redis = withoutErrorText(app.hasDecorator('security') ? app.security.redis() : { state: 'disabled' });
    for (const worker of workers) {
      const health = worker.health();
      checks[worker.name] = { ...health, ...(health.detail ? { detail: withoutErrorText(health.detail) } : {}) };
      ready &&= health.ok;
    }
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', roles, eventStore: runtime.store.kind, checks });
  });

  // Made before the write API, which hands it each transfer it records when both run here.
  const processManager = roles.includes('process-manager')
    ? startProcessManager(write, runtime.db, runtime.store, runtime.databaseUrl, { logger: runtime.logger, batchSize: config.PROJECTION_BATCH_SIZE })
    : undefined;
  for (const role of roles) {
    switch (role) {
      case 'write-api':
        await app.register(writeApi, {
          write,
          timings: { deadlineMs: config.TRANSFER_DEADLINE_MS, holdGraceMs: config.TRANSFER_HOLD_GRACE_MS },
          admission: new TransferAdmission(runtime.db as unknown as Kysely<unknown>, runtime.store, { name: PROCESS_MANAGER_NAME, filter: PROCESS_MANAGER_FILTER }, { maxLagMs: config.TRANSFER_ADMISSION_MAX_LAG_MS, maxAppendWaitMs: config.TRANSFER_ADMISSION_MAX_APPEND_WAIT_MS, logger: runtime.logger }),
          handOff: processManager && ((event) => processManager.takeRecorded(event)),
        });
        break;
      case 'read-api':
        await app.register(readApi, { runtime });
        break;
      case 'projector':
        workers.push(...startProjector(runtime));
        break;
      case 'process-manager':
        workers.push(processManager!);
        break;
      default: {
        const unknownRole: never = role;
        throw new Error(`unknown role ${String(unknownRole)}`);
      }
    }
  }
  app.addHook('onClose', async () => {
    await Promise.all(workers.map((worker) => worker.stop().catch((error: unknown) => runtime.logger.warn({ err: error, worker: worker.name }, 'worker stop failed'))));
  });
  await app.ready();
  return { app, workers, write };
}

declare module 'fastify' {
  interface FastifyInstance {
    runtime: Runtime;
  }
}

/**
 * Readiness answers without a token, so it names states, positions and ids, never an error's text
 * (addresses, SQL, the data that failed): that is in the log and `ledger projections status`.
 */
function withoutErrorText<T extends object>(detail: T): T {
  return Object.fromEntries(Object.entries(detail).map(([key, value]) => (/error/i.test(key) && typeof value === 'string' ? [key, 'see the log'] : [key, value]))) as T;
}

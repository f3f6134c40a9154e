import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import type { ReadDatabase } from '../projections/database.js';
import type { Runtime } from '../runtime.js';
import { resolveHmacSecret } from '../shared/auth/keys.js';
import { accountReadRoutes } from './accounts/routes.js';
import { auditRoutes } from './audit/routes.js';
import { customerReadRoutes } from './customers/routes.js';
import { CursorCodec } from './http.js';
import { ProjectionProgress } from './progress.js';
import { transferReadRoutes } from './transfers/routes.js';

export interface ReadContext {
  db: Kysely<ReadDatabase>;
  progress: ProjectionProgress;
  cursors: CursorCodec;
  readWaitTimeoutMs: number;
  /** A transfer still pending this long after its request has missed its deadline. */
  transferDeadlineMs: number;
}

/** The query API: balances, history, transfers and customers from the read models. */
export async function readApi(app: FastifyInstance, { runtime }: { runtime: Runtime }): Promise<void> {
  const { config } = runtime;
  const progress = new ProjectionProgress(runtime.db as unknown as Kysely<unknown>, runtime.databaseUrl, runtime.logger);
  await progress.start();
  app.addHook('onClose', () => progress.close());
  const hmac = resolveHmacSecret(config);
  const cursorSecret = hmac ? Buffer.from(hmac).toString('hex') : createHash('sha256').update(config.JWT_PUBLIC_KEY ?? config.JWT_JWKS_URL ?? runtime.databaseUrl).digest('hex');
  const context: ReadContext = { db: runtime.db, progress, cursors: new CursorCodec(cursorSecret), readWaitTimeoutMs: config.READ_WAIT_TIMEOUT_MS, transferDeadlineMs: config.TRANSFER_DEADLINE_MS };
  await app.register(accountReadRoutes, context);
  await app.register(transferReadRoutes, context);
  await app.register(customerReadRoutes, context);
  await app.register(auditRoutes, { store: runtime.store });
}

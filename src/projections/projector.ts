import type { Kysely } from 'kysely';
import type { Runtime } from '../runtime.js';
import type { Worker } from '../server.js';
import { PROJECTIONS } from './registry.js';
import { ProjectionRunner } from './runner.js';

/** The projector role: one runner per read model; each is active in one process and stands by elsewhere. */
export function startProjector(runtime: Runtime): Worker[] {
  return PROJECTIONS.map((projection) =>
    new ProjectionRunner(projection, runtime.db as unknown as Kysely<unknown>, runtime.store, runtime.databaseUrl, {
      batchSize: runtime.config.PROJECTION_BATCH_SIZE,
      logger: runtime.logger,
    }).start(),
  );
}

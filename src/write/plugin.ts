import type { FastifyInstance } from 'fastify';
import { accountRoutes } from './accounts/routes.js';
import { customerRoutes } from './customers/routes.js';
import { movementRoutes } from './movements/routes.js';
import type { TransferAdmission } from './transfers/admission.js';
import type { RecordedByWriteApi } from './transfers/processManager.js';
import { transferRoutes, type TransferTimings } from './transfers/routes.js';
import type { WriteSide } from './writeSide.js';

/** The command API: every mutating /v1 route. */
export async function writeApi(app: FastifyInstance, options: { write: WriteSide; timings: TransferTimings; admission?: TransferAdmission; handOff?: (event: RecordedByWriteApi) => boolean }): Promise<void> {
  await app.register(customerRoutes, options);
  await app.register(accountRoutes, options);
  await app.register(movementRoutes, options);
  await app.register(transferRoutes, options);
}

import { accountsProjection } from './accounts/projection.js';
import { customersProjection } from './customers/projection.js';
import type { Projection } from './projection.js';
import { transactionsProjection } from './transactions/projection.js';
import { transfersProjection } from './transfers/projection.js';

export const PROJECTIONS: readonly Projection[] = [accountsProjection, transactionsProjection, transfersProjection, customersProjection];

export function projectionNamed(name: string): Projection {
  const projection = PROJECTIONS.find((candidate) => candidate.name === name);
  if (!projection) throw new Error(`unknown projection "${name}"; known: ${PROJECTIONS.map((known) => known.name).join(', ')}`);
  return projection;
}

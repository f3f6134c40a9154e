import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { TestLedger } from '../support/ledger.js';

/** Events in the store: a refused request must leave this unchanged. */
export async function storedEventCount(ledger: TestLedger): Promise<number> {
  const { rows } = await ledger.runtime.pool.query<{ count: string | number | bigint }>('select count(*) as count from ledger_events');
  return Number(rows[0]!.count);
}

export function expectProblem(response: LightMyRequestResponse, status: number): void {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toContain('application/problem+json');
  expect(JSON.parse(response.body)).toMatchObject({ status });
}

export function newCustomerBody(): { email: string; firstName: string; lastName: string } {
  return { email: `${randomUUID()}@example.com`, firstName: 'Ada', lastName: 'Lovelace' };
}

export function base64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** Events written on behalf of one principal (`role:subject`): robust against background writers such as the process manager. */
export async function eventsByActor(ledger: TestLedger, actor: string): Promise<number> {
  const { rows } = await ledger.runtime.pool.query<{ count: string | number | bigint }>("select count(*) as count from ledger_events where metadata->>'actor' = $1", [actor]);
  return Number(rows[0]!.count);
}

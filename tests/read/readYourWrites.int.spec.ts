import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectionNamed } from '../../src/projections/registry.js';
import { ProjectionRunner } from '../../src/projections/runner.js';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import { storeVariants } from '../support/variants.js';

const READ_WAIT_TIMEOUT_MS = 3_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(storeVariants('read-your-writes waits'))('read-your-writes waits on $name', ({ env: storeEnv }) => {
  let ledger: TestLedger;
  let tokens: { admin: string; teller: string; auditor: string };
  let teller: ReturnType<typeof client>;
  let auditor: ReturnType<typeof client>;

  beforeAll(async () => {
    ledger = await startTestLedger({ env: { ...storeEnv, READ_WAIT_TIMEOUT_MS: String(READ_WAIT_TIMEOUT_MS) } });
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller'), auditor: await ledger.token('auditor') };
    teller = client(ledger.app, tokens.teller);
    auditor = client(ledger.app, tokens.auditor);
  });
  afterAll(async () => {
    await ledger?.close();
  });

  /** Stops a projection's runner, so its read model lags until it is resumed. */
  async function pause(name: string): Promise<void> {
    const workers = ledger.ledger.workers;
    const index = workers.findIndex((worker) => worker.name === `projection:${name}`);
    expect(index, name).toBeGreaterThanOrEqual(0);
    const [runner] = workers.splice(index, 1);
    await runner!.stop();
  }

  /** Starts a new runner for a paused projection; it catches up from its checkpoint and is stopped with the app. */
  function resume(name: string): void {
    const { runtime } = ledger;
    const runner = new ProjectionRunner(projectionNamed(name), runtime.db as unknown as Kysely<unknown>, runtime.store, runtime.databaseUrl, { batchSize: runtime.config.PROJECTION_BATCH_SIZE, logger: runtime.logger });
    ledger.ledger.workers.push(runner.start());
  }

  it('waits for the read models a query reads together, so a 503 comes within one READ_WAIT_TIMEOUT_MS, not one per read model', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens);
    await pause('transactions');
    await pause('accounts');
    try {
      const position = (await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' })).json<{ position: string }>().position;
      const started = Date.now();
      const listed = auditor.get(`/v1/accounts/${accountId}/transactions?minPosition=${position}`);
      // The history catches up a third of the way into the bound; the accounts read model never does.
      await sleep(READ_WAIT_TIMEOUT_MS / 3);
      resume('transactions');
      const response = await listed;
      const elapsedMs = Date.now() - started;
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBe('1');
      // Only accounts is named: the history did catch up within the bound.
      const problem = response.json<{ code: string; detail: string }>();
      expect(problem.code).toBe('read_model_behind');
      expect(problem.detail).toContain('accounts');
      expect(problem.detail).not.toContain('transactions');
      expect(elapsedMs).toBeGreaterThanOrEqual(READ_WAIT_TIMEOUT_MS - 50);
      // Waited one after the other, the accounts wait began only when the history caught up: 4/3 of the bound at least.
      expect(elapsedMs).toBeLessThan(READ_WAIT_TIMEOUT_MS + READ_WAIT_TIMEOUT_MS / 4);
    } finally {
      if (!ledger.ledger.workers.some((worker) => worker.name === 'projection:transactions')) resume('transactions');
      resume('accounts');
    }
  });
});

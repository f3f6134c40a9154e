import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
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

  const paused = new Set<string>();
  afterEach(() => {
    for (const name of paused) resume(name);
  });

  /** Stops a projection's runner, so its read model lags until it is resumed. */
  async function pause(name: string): Promise<void> {
    paused.add(name);
    const workers = ledger.ledger.workers;
    const index = workers.findIndex((worker) => worker.name === `projection:${name}`);
    expect(index, name).toBeGreaterThanOrEqual(0);
    const [runner] = workers.splice(index, 1);
    await runner!.stop();
  }

  /** Starts a new runner for a paused projection; it catches up from its checkpoint and is stopped with the app. */
  function resume(name: string): void {
    paused.delete(name);
    const { runtime } = ledger;
    const runner = new ProjectionRunner(projectionNamed(name), runtime.db as unknown as Kysely<unknown>, runtime.store, runtime.databaseUrl, { batchSize: runtime.config.PROJECTION_BATCH_SIZE, logger: runtime.logger });
    ledger.ledger.workers.push(runner.start());
  }

  it('waits for the read models a query reads together, so a 503 comes within one READ_WAIT_TIMEOUT_MS, not one per read model', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens);
    await pause('transactions');
    await pause('accounts');
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
  });

  it("answers a customer's own transfer once the accounts read model has its accounts; while that lags, 503, never 404", async () => {
    await pause('accounts');
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const customer = client(ledger.app, await ledger.token('customer', from.customerId));
    const transferId = randomUUID();
    const accepted = await customer.post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '4.00', currency: 'EUR' });
    expect(accepted.statusCode).toBe(202);
    const position = accepted.json<{ position: string }>().position;
    const url = `/v1/transfers/${transferId}?minPosition=${position}`;
    // The transfers read model has the transfer: staff, who need no owner, read it at once.
    expect((await auditor.get(url)).statusCode).toBe(200);
    // The customer's owners come from the accounts read model: behind for the whole bound, it is a 503.
    const behind = await customer.get(url);
    expect(behind.statusCode).toBe(503);
    expect(behind.headers['retry-after']).toBe('1');
    expect(behind.json<{ code: string; detail: string }>()).toMatchObject({ code: 'read_model_behind', detail: expect.stringContaining('accounts') });
    // Caught up within the bound, it is the transfer.
    const read = customer.get(url);
    await sleep(READ_WAIT_TIMEOUT_MS / 3);
    resume('accounts');
    const response = await read;
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ id: transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '4.00' });
  });
});

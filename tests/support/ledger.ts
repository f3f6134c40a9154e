import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { pino } from 'pino';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { loadConfig, type Config } from '../../src/config.js';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { buildLedger, ROLES, type Ledger, type Role } from '../../src/server.js';
import { mintToken } from '../../src/shared/auth/keys.js';
import type { PrincipalRole } from '../../src/shared/auth/principal.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export const TEST_JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';

export interface TestLedger {
  app: FastifyInstance;
  ledger: Ledger;
  runtime: Runtime;
  database: TestDatabase;
  config: Config;
  token(role: PrincipalRole, subject?: string): Promise<string>;
  /** Builds another app on the same database, as a restart or a second instance would. */
  restart(roles?: readonly Role[]): Promise<{ app: FastifyInstance; close(): Promise<void> }>;
  close(): Promise<void>;
}

export async function startTestLedger(options: { roles?: readonly Role[]; env?: Record<string, string>; database?: TestDatabase } = {}): Promise<TestLedger> {
  const database = options.database ?? (await createTestDatabase('api'));
  const config = loadConfig({ DATABASE_URL: database.url, JWT_SECRET: TEST_JWT_SECRET, PG_POOL_MAX: '8', LOG_LEVEL: 'silent', ...options.env });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const roles = options.roles ?? ROLES;
  const runtime = await openRuntime(config, logger);
  const ledger = await buildLedger(runtime, roles);
  const secret = new TextEncoder().encode(TEST_JWT_SECRET);
  const extra: { close(): Promise<void> }[] = [];
  return {
    app: ledger.app,
    ledger,
    runtime,
    database,
    config,
    token: (role, subject = `${role}-${randomUUID().slice(0, 8)}`) => mintToken(secret, { role, subject }, { ttlSeconds: 3600 }),
    async restart(restartRoles = roles) {
      const otherRuntime = await openRuntime(config, logger);
      const other = await buildLedger(otherRuntime, restartRoles);
      const handle = {
        app: other.app,
        async close() {
          await other.app.close();
          await otherRuntime.close();
        },
      };
      extra.push(handle);
      return handle;
    },
    async close() {
      for (const handle of extra) await handle.close().catch(() => undefined);
      await ledger.app.close();
      await runtime.close();
      if (!options.database) await database.drop();
    },
  };
}

/** A small client over app.inject for tests: JSON in, JSON out. */
export function client(app: FastifyInstance, token: string) {
  const call = async (method: 'GET' | 'POST', url: string, body?: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse & { json: <T = Record<string, unknown>>() => T }> => {
    const allHeaders: Record<string, string> = { authorization: `Bearer ${token}`, ...(method === 'POST' ? { 'idempotency-key': randomUUID() } : {}), ...headers };
    if (body !== undefined) allHeaders['content-type'] ??= 'application/json';
    const response = await app.inject({ method, url, headers: allHeaders, ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }) });
    return response as LightMyRequestResponse & { json: <T = Record<string, unknown>>() => T };
  };
  return {
    get: (url: string, headers?: Record<string, string>) => call('GET', url, undefined, headers),
    post: (url: string, body?: unknown, headers?: Record<string, string>) => call('POST', url, body, headers),
  };
}

/** Registers and activates a customer, opens an account, and returns their ids. */
export async function openFundedAccount(app: FastifyInstance, tokens: { admin: string; teller: string }, options: { currency?: string; deposit?: string; overdraftLimit?: string } = {}) {
  const admin = client(app, tokens.admin);
  const teller = client(app, tokens.teller);
  const customer = await admin.post('/v1/customers', { email: `${randomUUID()}@example.com`, firstName: 'Ada', lastName: 'Lovelace' });
  if (customer.statusCode !== 201) throw new Error(`register failed: ${customer.body}`);
  const customerId = customer.json<{ id: string }>().id;
  const activated = await admin.post(`/v1/customers/${customerId}/activate`);
  if (activated.statusCode !== 200) throw new Error(`activate failed: ${activated.body}`);
  const currency = options.currency ?? 'EUR';
  const account = await teller.post('/v1/accounts', { customerId, currency, type: 'checking', ...(options.overdraftLimit ? { overdraftLimit: options.overdraftLimit } : {}) });
  if (account.statusCode !== 201) throw new Error(`open failed: ${account.body}`);
  const accountId = account.json<{ id: string }>().id;
  let position = account.json<{ position: string }>().position;
  if (options.deposit) {
    const deposit = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: options.deposit, currency });
    if (deposit.statusCode !== 201) throw new Error(`deposit failed: ${deposit.body}`);
    position = deposit.json<{ position: string }>().position;
  }
  // The log position of the last write, for read-your-writes queries (`minPosition`).
  return { customerId, accountId, currency, position };
}

/**
 * A ledger for the enclosing describe block: started before its tests with the staff's tokens
 * minted, closed after them. Read its fields inside tests and hooks, once it has started.
 */
export function ledgerForSuite(options: Parameters<typeof startTestLedger>[0] = {}): { ledger: TestLedger; tokens: { admin: string; teller: string; auditor: string } } {
  const suite = {} as { ledger: TestLedger; tokens: { admin: string; teller: string; auditor: string } };
  beforeAll(async () => {
    suite.ledger = await startTestLedger(options);
    suite.tokens = { admin: await suite.ledger.token('admin'), teller: await suite.ledger.token('teller'), auditor: await suite.ledger.token('auditor') };
  });
  afterAll(async () => {
    await suite.ledger?.close();
  });
  return suite;
}

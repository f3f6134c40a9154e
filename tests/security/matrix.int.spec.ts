import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessRule, PrincipalRole } from '../../src/shared/auth/principal.js';
import { accountStream } from '../../src/write/streams.js';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import { eventsByActor, newCustomerBody } from './helpers.js';

/**
 * The authorisation matrix, generated from `app.routeTable`: every /v1 route × every kind of caller.
 * A route without a fixture below fails the run by name. Adding a route is one entry in FIXTURES.
 */
type Tokens = { admin: string; teller: string };
interface World {
  ledger: TestLedger;
  tokens: Tokens;
  /** An active customer with an account holding 100.00 EUR. */
  customerId: string;
  accountId: string;
}
interface Call {
  url: string;
  body?: unknown;
}
interface Fixture {
  /** The status an allowed caller gets; the fixture prepares state so that it is exactly this. */
  success: number;
  prepare(world: World): Promise<Call>;
}

const admin = (world: World) => client(world.ledger.app, world.tokens.admin);
const teller = (world: World) => client(world.ledger.app, world.tokens.teller);
async function ok(response: { statusCode: number; body: string }, status: number): Promise<void> {
  if (response.statusCode !== status) throw new Error(`fixture setup failed with ${response.statusCode}: ${response.body}`);
}
const futureIso = () => new Date(Date.now() + 3_600_000).toISOString();
async function withHold(world: World): Promise<string> {
  const holdId = randomUUID();
  await ok(await teller(world).post(`/v1/accounts/${world.accountId}/holds`, { holdId, amount: '10.00', currency: 'EUR', expiresAt: futureIso() }), 201);
  return holdId;
}
async function pendingCustomer(world: World): Promise<string> {
  const response = await admin(world).post('/v1/customers', newCustomerBody());
  await ok(response, 201);
  return response.json<{ id: string }>().id;
}

/** A fresh write whose position a read can wait for (read models are eventually consistent). */
async function writtenPosition(world: World): Promise<string> {
  const response = await teller(world).post(`/v1/accounts/${world.accountId}/deposits`, { amount: '1.00', currency: 'EUR' });
  await ok(response, 201);
  return response.json<{ position: string }>().position;
}
async function secondAccount(world: World): Promise<string> {
  const response = await teller(world).post('/v1/accounts', { customerId: world.customerId, currency: 'EUR', type: 'savings' });
  await ok(response, 201);
  return response.json<{ id: string }>().id;
}
async function requestedTransfer(world: World): Promise<{ id: string; position: string }> {
  const id = randomUUID();
  const response = await teller(world).post('/v1/transfers', { transferId: id, fromAccountId: world.accountId, toAccountId: await secondAccount(world), amount: '5.00', currency: 'EUR' });
  await ok(response, 202);
  return { id, position: response.json<{ position: string }>().position };
}

export const FIXTURES: Record<string, Fixture> = {
  'POST /v1/customers': { success: 201, prepare: async () => ({ url: '/v1/customers', body: newCustomerBody() }) },
  'POST /v1/customers/:id/activate': { success: 200, prepare: async (world) => ({ url: `/v1/customers/${await pendingCustomer(world)}/activate` }) },
  'POST /v1/customers/:id/suspend': { success: 200, prepare: async (world) => ({ url: `/v1/customers/${world.customerId}/suspend`, body: { reason: 'matrix' } }) },
  'POST /v1/customers/:id/reactivate': {
    success: 200,
    prepare: async (world) => {
      await ok(await admin(world).post(`/v1/customers/${world.customerId}/suspend`, {}), 200);
      return { url: `/v1/customers/${world.customerId}/reactivate` };
    },
  },
  'POST /v1/accounts': { success: 201, prepare: async (world) => ({ url: '/v1/accounts', body: { customerId: world.customerId, currency: 'EUR', type: 'savings' } }) },
  'POST /v1/accounts/:id/freeze': { success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/freeze`, body: { reason: 'matrix' } }) },
  'POST /v1/accounts/:id/unfreeze': {
    success: 200,
    prepare: async (world) => {
      await ok(await teller(world).post(`/v1/accounts/${world.accountId}/freeze`, {}), 200);
      return { url: `/v1/accounts/${world.accountId}/unfreeze` };
    },
  },
  'POST /v1/accounts/:id/close': {
    success: 200,
    prepare: async (world) => {
      await ok(await teller(world).post(`/v1/accounts/${world.accountId}/withdrawals`, { amount: '100.00', currency: 'EUR' }), 201);
      return { url: `/v1/accounts/${world.accountId}/close` };
    },
  },
  'POST /v1/accounts/:id/overdraft': { success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/overdraft`, body: { overdraftLimit: '50.00' } }) },
  'POST /v1/accounts/:id/deposits': { success: 201, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/deposits`, body: { amount: '12.34', currency: 'EUR' } }) },
  'POST /v1/accounts/:id/withdrawals': { success: 201, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/withdrawals`, body: { amount: '12.34', currency: 'EUR' } }) },
  'POST /v1/accounts/:id/holds': {
    success: 201,
    prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/holds`, body: { holdId: randomUUID(), amount: '10.00', currency: 'EUR', expiresAt: futureIso() } }),
  },
  'POST /v1/accounts/:id/holds/:holdId/capture': { success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/holds/${await withHold(world)}/capture`, body: { amount: '4.00' } }) },
  'POST /v1/accounts/:id/holds/:holdId/release': { success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/holds/${await withHold(world)}/release` }) },
  'POST /v1/transfers': {
    success: 202,
    prepare: async (world) => ({ url: '/v1/transfers', body: { transferId: randomUUID(), fromAccountId: world.accountId, toAccountId: await secondAccount(world), amount: '5.00', currency: 'EUR' } }),
  },
  'GET /v1/accounts/:id': { success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}?minPosition=${await writtenPosition(world)}` }) },
  'GET /v1/accounts/:id/transactions': {
    success: 200,
    prepare: async (world) => {
      const position = await writtenPosition(world);
      // The route waits for the transactions projection only, but looks the account up in the accounts one.
      await ok(await teller(world).get(`/v1/accounts/${world.accountId}?minPosition=${position}`), 200);
      return { url: `/v1/accounts/${world.accountId}/transactions?minPosition=${position}` };
    },
  },
  'GET /v1/customers/:id': { success: 200, prepare: async (world) => ({ url: `/v1/customers/${world.customerId}?minPosition=${await writtenPosition(world)}` }) },
  'GET /v1/customers/:id/accounts': {
    success: 200,
    prepare: async (world) => {
      const position = await writtenPosition(world);
      // The route waits for the accounts projection only, but looks the customer up in the customers one.
      await ok(await teller(world).get(`/v1/customers/${world.customerId}?minPosition=${position}`), 200);
      return { url: `/v1/customers/${world.customerId}/accounts?minPosition=${position}` };
    },
  },
  'GET /v1/audit/streams/:streamName': { success: 200, prepare: async (world) => ({ url: `/v1/audit/streams/${encodeURIComponent(accountStream(world.accountId))}` }) },
  'GET /v1/audit/trial-balance': { success: 200, prepare: async () => ({ url: '/v1/audit/trial-balance' }) },
  'GET /v1/transfers/:id': {
    success: 200,
    prepare: async (world) => {
      const transfer = await requestedTransfer(world);
      return { url: `/v1/transfers/${transfer.id}?minPosition=${transfer.position}` };
    },
  },
};

type Caller = 'customer (owner)' | 'customer (non-owner)' | Exclude<PrincipalRole, 'customer'>;
const CALLERS: readonly Caller[] = ['customer (owner)', 'customer (non-owner)', 'teller', 'auditor', 'admin'];

/** What the AccessRule promises each caller. */
export function expectedStatus(access: AccessRule, caller: Caller, success: number): number {
  if (caller === 'customer (owner)' || caller === 'customer (non-owner)') {
    if (!access.roles.includes('customer')) return 403;
    return caller === 'customer (owner)' ? success : 404;
  }
  return access.roles.includes(caller) ? success : 403;
}

const ledger = await startTestLedger();
const routes = ledger.app.routeTable.map((route) => ({ ...route, name: `${route.method} ${route.url}` }));

describe('authorisation matrix (generated from the route table)', () => {
  let tokens: Tokens;
  beforeAll(async () => {
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
  });
  afterAll(async () => {
    await ledger.close();
  });

  it('covers a non-empty route table', () => {
    expect(routes.length).toBeGreaterThan(10);
  });

  it.each(routes.map((route) => [route.name]))('has a fixture for %s', (name) => {
    expect(FIXTURES[name], `no authorisation fixture for ${name}: add one to FIXTURES in tests/security/matrix.int.spec.ts`).toBeDefined();
  });

  const cases = routes.flatMap((route) => CALLERS.map((caller) => ({ route, caller })));
  it.each(cases.map((entry) => [entry.route.name, entry.caller, entry]))('%s as %s', async (name, caller, { route }) => {
    const fixture = FIXTURES[name];
    if (!fixture) throw new Error(`no authorisation fixture for ${name}: add one to FIXTURES in tests/security/matrix.int.spec.ts`);
    const funded = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
    const world: World = { ledger, tokens, ...funded };
    const call = await fixture.prepare(world);
    const subject = caller === 'customer (owner)' ? funded.customerId : caller === 'customer (non-owner)' ? randomUUID() : undefined;
    const role: PrincipalRole = caller.startsWith('customer') ? 'customer' : (caller as PrincipalRole);
    const actualSubject = subject ?? `${role}-${randomUUID().slice(0, 8)}`;
    const token = await ledger.token(role, actualSubject);
    const expected = expectedStatus(route.access, caller, fixture.success);

    const api = client(ledger.app, token);
    const response = route.method === 'GET' ? await api.get(call.url) : await api.post(call.url, call.body);
    expect(response.statusCode, `${name} as ${caller}: ${response.body}`).toBe(expected);
    if (expected >= 400) {
      expect(response.headers['content-type']).toContain('application/problem+json');
      // Counted per actor, not globally: background workers (projections, the process manager) keep writing.
      expect(await eventsByActor(ledger, `${role}:${actualSubject}`)).toBe(0);
    }
  });
});

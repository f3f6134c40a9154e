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
  /**
   * Who may call the route, written here rather than read from the app's own `access` rule, so a
   * wrongly declared rule fails both the declaration check and the calls (README, "who").
   */
  roles: readonly PrincipalRole[];
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

const ADMIN: readonly PrincipalRole[] = ['admin'];
const TELLER: readonly PrincipalRole[] = ['teller'];
const AUDITOR: readonly PrincipalRole[] = ['auditor'];
const EVERYONE: readonly PrincipalRole[] = ['customer', 'teller', 'auditor', 'admin'];

export const FIXTURES: Record<string, Fixture> = {
  'POST /v1/customers': { roles: ADMIN, success: 201, prepare: async () => ({ url: '/v1/customers', body: newCustomerBody() }) },
  'POST /v1/customers/:id/activate': { roles: ADMIN, success: 200, prepare: async (world) => ({ url: `/v1/customers/${await pendingCustomer(world)}/activate` }) },
  'POST /v1/customers/:id/suspend': { roles: ADMIN, success: 200, prepare: async (world) => ({ url: `/v1/customers/${world.customerId}/suspend`, body: { reason: 'matrix' } }) },
  'POST /v1/customers/:id/reactivate': {
    roles: ADMIN,
    success: 200,
    prepare: async (world) => {
      await ok(await admin(world).post(`/v1/customers/${world.customerId}/suspend`, {}), 200);
      return { url: `/v1/customers/${world.customerId}/reactivate` };
    },
  },
  'POST /v1/accounts': { roles: ['teller', 'customer'], success: 201, prepare: async (world) => ({ url: '/v1/accounts', body: { customerId: world.customerId, currency: 'EUR', type: 'savings' } }) },
  'POST /v1/accounts/:id/freeze': { roles: TELLER, success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/freeze`, body: { reason: 'matrix' } }) },
  'POST /v1/accounts/:id/unfreeze': {
    roles: TELLER,
    success: 200,
    prepare: async (world) => {
      await ok(await teller(world).post(`/v1/accounts/${world.accountId}/freeze`, {}), 200);
      return { url: `/v1/accounts/${world.accountId}/unfreeze` };
    },
  },
  'POST /v1/accounts/:id/close': {
    roles: ADMIN,
    success: 200,
    prepare: async (world) => {
      await ok(await teller(world).post(`/v1/accounts/${world.accountId}/withdrawals`, { amount: '100.00', currency: 'EUR' }), 201);
      return { url: `/v1/accounts/${world.accountId}/close` };
    },
  },
  'POST /v1/accounts/:id/overdraft': { roles: ADMIN, success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/overdraft`, body: { overdraftLimit: '50.00' } }) },
  'POST /v1/accounts/:id/deposits': { roles: TELLER, success: 201, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/deposits`, body: { amount: '12.34', currency: 'EUR' } }) },
  'POST /v1/accounts/:id/withdrawals': { roles: TELLER, success: 201, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/withdrawals`, body: { amount: '12.34', currency: 'EUR' } }) },
  'POST /v1/accounts/:id/holds': {
    roles: TELLER,
    success: 201,
    prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/holds`, body: { holdId: randomUUID(), amount: '10.00', currency: 'EUR', expiresAt: futureIso() } }),
  },
  'POST /v1/accounts/:id/holds/:holdId/capture': { roles: TELLER, success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/holds/${await withHold(world)}/capture`, body: { amount: '4.00' } }) },
  'POST /v1/accounts/:id/holds/:holdId/release': { roles: TELLER, success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}/holds/${await withHold(world)}/release` }) },
  'POST /v1/transfers': {
    roles: ['customer', 'teller'],
    success: 202,
    prepare: async (world) => ({ url: '/v1/transfers', body: { transferId: randomUUID(), fromAccountId: world.accountId, toAccountId: await secondAccount(world), amount: '5.00', currency: 'EUR' } }),
  },
  'GET /v1/accounts/:id': { roles: EVERYONE, success: 200, prepare: async (world) => ({ url: `/v1/accounts/${world.accountId}?minPosition=${await writtenPosition(world)}` }) },
  'GET /v1/accounts/:id/transactions': {
    roles: EVERYONE,
    success: 200,
    prepare: async (world) => {
      const position = await writtenPosition(world);
      // The route waits for the transactions projection only, but looks the account up in the accounts one.
      await ok(await teller(world).get(`/v1/accounts/${world.accountId}?minPosition=${position}`), 200);
      return { url: `/v1/accounts/${world.accountId}/transactions?minPosition=${position}` };
    },
  },
  'GET /v1/customers/:id': { roles: EVERYONE, success: 200, prepare: async (world) => ({ url: `/v1/customers/${world.customerId}?minPosition=${await writtenPosition(world)}` }) },
  'GET /v1/customers/:id/accounts': {
    roles: EVERYONE,
    success: 200,
    prepare: async (world) => {
      const position = await writtenPosition(world);
      // The route waits for the accounts projection only, but looks the customer up in the customers one.
      await ok(await teller(world).get(`/v1/customers/${world.customerId}?minPosition=${position}`), 200);
      return { url: `/v1/customers/${world.customerId}/accounts?minPosition=${position}` };
    },
  },
  'GET /v1/audit/streams/:streamName': { roles: AUDITOR, success: 200, prepare: async (world) => ({ url: `/v1/audit/streams/${encodeURIComponent(accountStream(world.accountId))}` }) },
  'GET /v1/audit/trial-balance': { roles: AUDITOR, success: 200, prepare: async () => ({ url: '/v1/audit/trial-balance' }) },
  'GET /v1/audit/overdue-transfers': { roles: ['auditor', 'admin'], success: 200, prepare: async () => ({ url: '/v1/audit/overdue-transfers' }) },
  'GET /v1/transfers/:id': {
    roles: EVERYONE,
    success: 200,
    prepare: async (world) => {
      const transfer = await requestedTransfer(world);
      return { url: `/v1/transfers/${transfer.id}?minPosition=${transfer.position}` };
    },
  },
};

type Caller = 'customer (owner)' | 'customer (non-owner)' | Exclude<PrincipalRole, 'customer'>;
const CALLERS: readonly Caller[] = ['customer (owner)', 'customer (non-owner)', 'teller', 'auditor', 'admin'];

/** What the fixture's roles promise each caller (a customer only ever reaches what they own). */
export function expectedStatus(roles: readonly PrincipalRole[], caller: Caller, success: number): number {
  if (caller === 'customer (owner)' || caller === 'customer (non-owner)') {
    if (!roles.includes('customer')) return 403;
    return caller === 'customer (owner)' ? success : 404;
  }
  return roles.includes(caller) ? success : 403;
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

  it.each(routes.map((route) => [route.name, route.access]))('%s declares exactly the roles its fixture expects', (name, access: AccessRule) => {
    const fixture = FIXTURES[name];
    if (!fixture) throw new Error(`no authorisation fixture for ${name}`);
    expect([...access.roles].sort()).toEqual([...fixture.roles].sort());
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
    const expected = expectedStatus(fixture.roles, caller, fixture.success);

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

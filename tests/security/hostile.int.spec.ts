import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PrincipalRole } from '../../src/shared/auth/principal.js';
import { openFundedAccount, startTestLedger } from '../support/ledger.js';
import { eventsByActor } from './helpers.js';

/**
 * Hostile input against every route in the route table: whatever arrives, the answer is a 4xx
 * problem (or a 2xx when the input happens to be valid), never a 5xx, and a refusal writes nothing.
 */
const NASTY_TEXT = [
  "' OR 1=1 --",
  "'; drop table ledger_events; --",
  '{"$where": "sleep(1000)"}',
  '$where',
  '$gt',
  '../../etc/passwd',
  '..%2F..%2Fetc%2Fpasswd',
  '<script>alert(1)</script>',
  '${jndi:ldap://x}',
  '{{7*7}}',
  '\u202Eevil\u202C',
  'a\u200Bb\u200Dc\uFEFF',
  'nul\u0000byte',
  '\u0000',
  'lone \uD800 surrogate',
  '\uDC00',
  '１２',
  '١٢٣',
  '12\u00A0000',
  'ＥＵＲ',
  'EUR\u0000',
  '',
  ' ',
  '-0',
  '1e3',
  '0x10',
  'NaN',
  'Infinity',
  '9'.repeat(400),
  'a'.repeat(5_000),
  '__proto__',
  'constructor',
];
const NASTY_NUMBER_LITERALS = ['-0', '1e400', '-1e400', '1E+2', '12.34e0', '99999999999999999999999999999', '0.1e-400', '1.0000000000000000000001', '-12.34', '0'];
const FIELDS = ['customerId', 'currency', 'type', 'amount', 'holdId', 'expiresAt', 'reference', 'description', 'email', 'firstName', 'lastName', 'reason', 'overdraftLimit', 'fromAccountId', 'toAccountId', 'transferId'];
const VALID: Record<string, () => unknown> = {
  customerId: () => randomUUID(),
  currency: () => 'EUR',
  type: () => 'checking',
  amount: () => '12.34',
  holdId: () => randomUUID(),
  expiresAt: () => new Date(Date.now() + 3_600_000).toISOString(),
  reference: () => 'ref',
  description: () => 'desc',
  email: () => `${randomUUID()}@example.com`,
  firstName: () => 'Ada',
  lastName: () => 'Lovelace',
  reason: () => 'because',
  overdraftLimit: () => '10.00',
  fromAccountId: () => randomUUID(),
  toAccountId: () => randomUUID(),
  transferId: () => randomUUID(),
};

const nastyText = fc.oneof(fc.constantFrom(...NASTY_TEXT), fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 20 }));
const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  nastyText,
  fc.constantFrom(-0, 0, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, 12.34, true, false, null),
  fc.double(),
  fc.integer(),
  fc.array(fc.constantFrom('EUR', 1, null), { maxLength: 3 }),
  fc.dictionary(fc.constantFrom('$where', '$gt', '__proto__x', 'amount'), fc.constantFrom('1', 1, null), { maxKeys: 2 }),
);
/** A body of known fields, each valid or hostile, sometimes with an unknown field. */
const objectBody = fc
  .record({
    fields: fc.subarray(FIELDS, { maxLength: 6 }),
    hostile: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
    values: fc.array(nastyValue, { minLength: 6, maxLength: 6 }),
    extra: fc.option(fc.tuple(fc.constantFrom('isAdmin', '$where', 'role', 'balance'), nastyValue), { nil: undefined }),
  })
  .map(({ fields, hostile, values, extra }) => {
    const body: Record<string, unknown> = {};
    fields.forEach((field, index) => (body[field] = hostile[index] ? values[index] : VALID[field]!()));
    if (extra) body[extra[0]] = extra[1];
    return JSON.stringify(body);
  });
/** Text that is not the JSON.stringify of anything: malformed JSON, odd literals, prototype keys. */
const rawBody = fc.oneof(
  fc.constantFrom('{', '{"amount":', '[]', 'null', '"x"', '1', '{"a":1,}', "{'a':1}", '{"__proto__":{"polluted":true}}', '{"constructor":{"prototype":{"polluted":true}}}', '\u0000', '{"amount":"1"}garbage'),
  fc.constantFrom(...NASTY_NUMBER_LITERALS).map((literal) => `{"amount":${literal},"currency":"EUR"}`),
  fc.constantFrom(...NASTY_NUMBER_LITERALS).map((literal) => `{"amount":"${literal}","currency":"EUR"}`),
  fc.string({ unit: 'binary', maxLength: 60 }),
);
const paramValue = fc.oneof(fc.constant('VALID'), fc.constantFrom(...NASTY_TEXT.filter((text) => text.length > 0 && text.length < 1_000)), fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }));
const queryString = fc.option(fc.tuple(fc.constantFrom('limit', 'cursor', 'minPosition', 'from', '$where', 'q'), nastyText), { nil: undefined });

const ledger = await startTestLedger();
const postRoutes = ledger.app.routeTable.filter((route) => route.method === 'POST');
const getRoutes = ledger.app.routeTable.filter((route) => route.method === 'GET');

function caller(roles: readonly PrincipalRole[]): PrincipalRole {
  return roles.find((role) => role !== 'customer') ?? 'customer';
}

/** Percent-encodes any text, lone surrogates included (as the invalid UTF-8 bytes a hostile client would send). */
function encode(text: string): string {
  let out = '';
  for (const char of text) {
    const unit = char.charCodeAt(0);
    if (char.length === 1 && unit >= 0xd800 && unit <= 0xdfff) out += [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)].map((byte) => `%${byte.toString(16).toUpperCase()}`).join('');
    else out += encodeURIComponent(char);
  }
  return out;
}

function fill(url: string, params: string[], accountId: string): string {
  let index = 0;
  return url.replace(/:[A-Za-z]+/g, (name) => {
    const value = params[index++ % params.length] ?? 'VALID';
    if (value === 'VALID') return name === ':id' ? accountId : randomUUID();
    return encode(value);
  });
}

function expectRefusalOrSuccess(response: LightMyRequestResponse, label: string): void {
  expect(response.statusCode, `${label}: ${response.body.slice(0, 300)}`).toBeLessThan(500);
  if (response.statusCode >= 400) expect(response.headers['content-type'], label).toContain('application/problem+json');
}

describe('hostile input', () => {
  let accountId: string;
  const tokens = new Map<PrincipalRole, string>();
  /** Refusals are checked per actor: background workers (projections, the process manager) keep writing. */
  const written = (role: PrincipalRole) => eventsByActor(ledger, `${role}:hostile-${role}`);
  beforeAll(async () => {
    for (const role of ['admin', 'teller', 'auditor', 'customer'] as const) tokens.set(role, await ledger.token(role, `hostile-${role}`));
    ({ accountId } = await openFundedAccount(ledger.app, { admin: tokens.get('admin')!, teller: tokens.get('teller')! }, { deposit: '100.00' }));
  });
  afterAll(async () => {
    await ledger.close();
  });

  it.each(postRoutes.map((route) => [`${route.method} ${route.url}`, route]))('%s: fuzzed bodies, params and query strings', async (label, route) => {
    const role = caller(route.access.roles);
    const token = tokens.get(role)!;
    await fc.assert(
      fc.asyncProperty(fc.oneof(objectBody, rawBody), fc.array(paramValue, { minLength: 1, maxLength: 2 }), queryString, fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded'), async (body, params, query, contentType) => {
        const url = `${fill(route.url, params, accountId)}${query ? `?${encode(query[0])}=${encode(query[1])}` : ''}`;
        const before = await written(role);
        const response = await ledger.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID(), 'content-type': contentType }, payload: body });
        expectRefusalOrSuccess(response, `${label} ${url} ${contentType} ${JSON.stringify(body).slice(0, 200)}`);
        if (response.statusCode >= 400) expect(await written(role), `${label} wrote events for a refused request`).toBe(before);
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 40) },
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it.each(getRoutes.map((route) => [`${route.method} ${route.url}`, route]))('%s: fuzzed params and query strings', async (label, route) => {
    const token = tokens.get(caller(route.access.roles))!;
    await fc.assert(
      fc.asyncProperty(fc.array(paramValue, { minLength: 1, maxLength: 2 }), queryString, async (params, query) => {
        const url = `${fill(route.url, params, accountId)}${query ? `?${encode(query[0])}=${encode(query[1])}` : ''}`;
        const response = await ledger.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
        expectRefusalOrSuccess(response, `${label} ${url}`);
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 40) },
    );
  });

  it('refuses hostile text deterministically: NUL and lone surrogates are a 400, not a failed write', async () => {
    const token = tokens.get('teller')!;
    for (const reference of ['nul\u0000byte', 'lone \uD800', '\uDFFF']) {
      const before = await written('teller');
      const response = await ledger.app.inject({ method: 'POST', url: `/v1/accounts/${accountId}/deposits`, headers: { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' }, payload: JSON.stringify({ amount: '1.00', currency: 'EUR', reference }) });
      expect(response.statusCode, response.body).toBe(400);
      expect(response.json()).toMatchObject({ code: 'invalid_text' });
      expect(await written('teller')).toBe(before);
    }
  });

  it.each([
    ['a key given twice', '{"amount":"1.00","currency":"EUR","amount":"900.00"}', 400, 'duplicate_key'],
    ['a key given twice, once escaped', '{"amount":"1.00","currency":"EUR","\\u0061mount":"900.00"}', 400, 'duplicate_key'],
    ['a key given twice in a nested object', '{"amount":"1.00","currency":"EUR","reference":"r","x":{"a":1,"a":2}}', 400, 'duplicate_key'],
  ])('refuses %s with a 400 problem, before anything is decided', async (_label, payload, status, code) => {
    const before = await written('teller');
    const response = await ledger.app.inject({ method: 'POST', url: `/v1/accounts/${accountId}/deposits`, headers: { authorization: `Bearer ${tokens.get('teller')}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' }, payload });
    expect(response.statusCode, response.body).toBe(status);
    expect(response.headers['content-type']).toContain('application/problem+json');
    expect(response.json()).toMatchObject({ code });
    expect(await written('teller')).toBe(before);
  });

  it('refuses a body declared in a charset other than UTF-8 with a 415 problem unless it is ASCII in an ASCII-compatible one, and takes utf-8 in any spelling', async () => {
    const payload = JSON.stringify({ amount: '1.00', currency: 'EUR' });
    const post = (contentType: string) => ledger.app.inject({ method: 'POST', url: `/v1/accounts/${accountId}/deposits`, headers: { authorization: `Bearer ${tokens.get('teller')}`, 'idempotency-key': randomUUID(), 'content-type': contentType }, payload });
    const before = await written('teller');
    const shiftJis = await post('application/json; charset=shift_jis');
    expect(shiftJis.statusCode, shiftJis.body).toBe(415);
    expect(shiftJis.json()).toMatchObject({ code: 'unsupported_charset' });
    // Labelled Latin-1 but not ASCII: its bytes would be read as UTF-8, so it is refused.
    const accented = await ledger.app.inject({ method: 'POST', url: `/v1/accounts/${accountId}/deposits`, headers: { authorization: `Bearer ${tokens.get('teller')}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json; charset=iso-8859-1' }, payload: JSON.stringify({ amount: '1.00', currency: 'EUR', description: 'café' }) });
    expect(accented.statusCode, accented.body).toBe(415);
    expect(await written('teller')).toBe(before);
    // ASCII reads the same in all of these (older Java clients label JSON ISO-8859-1).
    for (const contentType of ['application/json; charset=UTF-8', 'application/json;charset="utf8"', 'application/json', 'application/json; charset=ISO-8859-1', 'application/json; charset=us-ascii']) expect((await post(contentType)).statusCode, contentType).toBe(201);
  });

  it('refuses a query parameter that a route does not read, by name, on commands and on queries that take none', async () => {
    const before = await written('teller');
    const deposit = await ledger.app.inject({ method: 'POST', url: `/v1/accounts/${accountId}/deposits?amount=5`, headers: { authorization: `Bearer ${tokens.get('teller')}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' }, payload: JSON.stringify({ amount: '1.00', currency: 'EUR' }) });
    expect(deposit.statusCode, deposit.body).toBe(400);
    expect(deposit.headers['content-type']).toContain('application/problem+json');
    expect(deposit.body).toContain('amount');
    expect(await written('teller')).toBe(before);
    const trialBalance = await ledger.app.inject({ method: 'GET', url: '/v1/audit/trial-balance?foo=1', headers: { authorization: `Bearer ${tokens.get('auditor')}` } });
    expect(trialBalance.statusCode, trialBalance.body).toBe(400);
    expect(trialBalance.headers['content-type']).toContain('application/problem+json');
    expect((await ledger.app.inject({ method: 'GET', url: '/v1/audit/trial-balance', headers: { authorization: `Bearer ${tokens.get('auditor')}` } })).statusCode).toBe(200);
  });

  it('refuses a body over BODY_LIMIT_BYTES with a 413 problem', async () => {
    const before = await written('teller');
    const payload = JSON.stringify({ amount: '1.00', currency: 'EUR', description: 'x'.repeat(ledger.config.BODY_LIMIT_BYTES + 1) });
    const response = await ledger.app.inject({ method: 'POST', url: `/v1/accounts/${accountId}/deposits`, headers: { authorization: `Bearer ${tokens.get('teller')}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' }, payload });
    expect(response.statusCode).toBe(413);
    expect(response.headers['content-type']).toContain('application/problem+json');
    expect(response.json()).toMatchObject({ code: 'body_too_large' });
    expect(await written('teller')).toBe(before);
  });

  it.each([
    ['text/plain', '{"amount":"1.00","currency":"EUR"}', 415, 'unsupported_media_type'],
    ['application/json', '{"amount":"1.00",', 400, 'invalid_json'],
  ])('names Fastify\'s own refusals by the problem (%s, %s)', async (contentType, payload, status, code) => {
    const response = await ledger.app.inject({ method: 'POST', url: `/v1/accounts/${accountId}/deposits`, headers: { authorization: `Bearer ${tokens.get('teller')}`, 'idempotency-key': randomUUID(), 'content-type': contentType }, payload });
    expect(response.statusCode, response.body).toBe(status);
    expect(response.json()).toMatchObject({ code });
  });

  it('refuses headers over 16 KiB with a 431 problem on a real socket', async () => {
    await ledger.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = ledger.app.server.address() as AddressInfo;
    const answer = await new Promise<{ status: number; contentType: string | undefined; body: string }>((resolve, reject) => {
      const outgoing = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: `/v1/accounts/${accountId}/deposits`, headers: { authorization: `Bearer ${tokens.get('teller')}`, 'x-padding': 'p'.repeat(20_000) } }, (incoming) => {
        let body = '';
        incoming.on('data', (chunk: Buffer) => (body += chunk.toString()));
        incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, contentType: incoming.headers['content-type'], body }));
      });
      outgoing.on('error', reject);
      outgoing.end('{}');
    });
    expect(answer.status).toBe(431);
    expect(answer.contentType).toContain('application/problem+json');
    expect(JSON.parse(answer.body)).toMatchObject({ status: 431, code: 'headers_too_large' });
  });

  it.each([
    ['GET', 'http://ledger.test/v1/audit/trial-balance'],
    ['GET', `http://ledger.test/v1/audit/streams/account-${randomUUID()}`],
    ['GET', `http://ledger.test/v1/transfers/${randomUUID()}`],
    ['POST', 'http://ledger.test/v1/customers'],
  ])('an absolute-form target (%s %s) needs a token like the path alone, on a real socket', async (method, target) => {
    if (!ledger.app.server.listening) await ledger.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = ledger.app.server.address() as AddressInfo;
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end(`${method} ${target} HTTP/1.1\r\nHost: ledger.test\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`);
      });
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
    });
    const [head = '', body = ''] = raw.split('\r\n\r\n');
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 401 Unauthorized');
    expect(head.toLowerCase()).toContain('content-type: application/problem+json');
    expect(JSON.parse(body)).toMatchObject({ status: 401, code: 'unauthenticated' });
  });
});

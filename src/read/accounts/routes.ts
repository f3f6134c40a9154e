import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { formatAmount, parseAmount } from '../../domain/money.js';
import { parseInstantMs } from '../../domain/time.js';
import { findAccount, type AccountRow } from '../../projections/accounts/query.js';
import { listTransactions, type TransactionRow } from '../../projections/transactions/query.js';
import { TRANSACTION_STATUSES, TRANSACTION_TYPES, type TransactionStatus, type TransactionType } from '../../projections/transactions/table.js';
import { assertOwner } from '../../shared/auth/plugin.js';
import { HttpProblem } from '../../shared/http/problem.js';
import { awaitPosition, awaitPositions, MinPositionQuery, parseCounter } from '../http.js';
import type { ReadContext } from '../plugin.js';

const Uuid = Type.String({ format: 'uuid', maxLength: 36 });
const Problems = { 400: Type.Ref('Problem'), 401: Type.Ref('Problem'), 403: Type.Ref('Problem'), 404: Type.Ref('Problem'), 503: Type.Ref('Problem') };

export const AccountView = Type.Object({
  id: Type.String(),
  customerId: Type.String(),
  currency: Type.String(),
  type: Type.String(),
  status: Type.String(),
  balance: Type.String(),
  available: Type.String(),
  held: Type.String(),
  overdraftLimit: Type.String(),
  openedAt: Type.String(),
  updatedAt: Type.String(),
  position: Type.String(),
});

const TransactionView = Type.Object({
  id: Type.String(),
  type: Type.String(),
  amount: Type.String(),
  currency: Type.String(),
  balanceAfter: Type.Union([Type.String(), Type.Null()]),
  status: Type.String(),
  counterpartyAccountId: Type.Union([Type.String(), Type.Null()]),
  transferId: Type.Union([Type.String(), Type.Null()]),
  holdId: Type.Union([Type.String(), Type.Null()]),
  reference: Type.Union([Type.String(), Type.Null()]),
  description: Type.Union([Type.String(), Type.Null()]),
  occurredAt: Type.String(),
  eventId: Type.String(),
  position: Type.String(),
});

const TransactionsQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ maxLength: 40, description: 'only rows at or after this ISO 8601 date (from its start) or date-time; without an offset, UTC' })),
    to: Type.Optional(Type.String({ maxLength: 40, description: 'only rows at or before this ISO 8601 date-time, or on or before this date (the whole day, to its end); without an offset, UTC' })),
    type: Type.Optional(Type.Union(TRANSACTION_TYPES.map((type) => Type.Literal(type)))),
    status: Type.Optional(Type.Union(TRANSACTION_STATUSES.map((status) => Type.Literal(status)))),
    minAmount: Type.Optional(Type.String({ maxLength: 32 })),
    maxAmount: Type.Optional(Type.String({ maxLength: 32 })),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    ...MinPositionQuery,
  },
  { additionalProperties: false },
);

export function accountView(row: AccountRow) {
  return {
    id: row.account_id,
    customerId: row.customer_id,
    currency: row.currency,
    type: row.account_type,
    status: row.status,
    balance: formatAmount(row.balance_minor, row.currency),
    available: formatAmount(row.available_minor, row.currency),
    held: formatAmount(row.held_minor, row.currency),
    overdraftLimit: formatAmount(row.overdraft_limit_minor, row.currency),
    openedAt: row.opened_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    position: row.last_position.toString(),
  };
}

function transactionView(row: TransactionRow) {
  return {
    id: row.id,
    type: row.type,
    amount: formatAmount(row.amount_minor, row.currency),
    currency: row.currency,
    balanceAfter: row.balance_after_minor === null ? null : formatAmount(row.balance_after_minor, row.currency),
    status: row.status,
    counterpartyAccountId: row.counterparty_account_id,
    transferId: row.transfer_id,
    holdId: row.hold_id,
    reference: row.reference,
    description: row.description,
    occurredAt: row.occurred_at,
    eventId: row.event_id,
    position: row.position.toString(),
  };
}

const notFound = () => new HttpProblem(404, 'account_not_found', 'no such account');

/** The account a caller may see: a customer's view of anyone else's account is a 404. */
async function visibleAccount(context: ReadContext, request: FastifyRequest, accountId: string): Promise<AccountRow> {
  const account = await findAccount(context.db, accountId);
  assertOwner(request, account?.customer_id, notFound);
  if (!account) throw notFound();
  return account;
}

/** What never changes once an account is opened: its owner and currency. */
interface AccountFacts {
  customerId: string;
  currency: string;
}

const ACCOUNT_FACTS_CACHED_MAX = 10_000;

/**
 * An account's owner and currency, remembered once seen: an account row, once projected, is never
 * removed and never changes owner or currency (a rebuild derives the same facts from the same
 * log). So a history page needs one query, not two. Misses are not remembered: an account may be
 * opened, and projected, a moment later.
 */
function accountFactsCache(context: ReadContext) {
  const facts = new Map<string, AccountFacts>();
  return async (request: FastifyRequest, accountId: string): Promise<AccountFacts> => {
    let known = facts.get(accountId);
    if (!known) {
      const account = await findAccount(context.db, accountId);
      if (account) {
        known = { customerId: account.customer_id, currency: account.currency };
        if (facts.size >= ACCOUNT_FACTS_CACHED_MAX) facts.delete(facts.keys().next().value!);
        facts.set(accountId, known);
      }
    }
    assertOwner(request, known?.customerId, notFound);
    if (!known) throw notFound();
    return known;
  };
}

/** A date, or a date-time whose seconds, fraction and offset are optional. */
const DATE_TEXT = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:Z|([+-])(\d{2}):?(\d{2}))?)?$/;
const DAY_MS = 86_400_000;

/** An instant given as text, and whether it was a date alone (the whole day) or a date-time. */
interface ParsedDate {
  at: Date;
  dateOnly: boolean;
}

/**
 * A date is UTC midnight; a date-time without an offset is UTC. Date.parse rolls "02-30" over to
 * March, so the fields as written go through parseInstantMs's round trip before the offset applies.
 */
function parseDate(value: string | undefined, field: string): ParsedDate | undefined {
  if (value === undefined) return undefined;
  const invalid = () => new HttpProblem(400, 'invalid_date', `${field} is not a valid date`);
  const match = DATE_TEXT.exec(value);
  if (!match) throw invalid();
  const [, day, hoursMinutes, seconds = '00', fraction = '', sign, offsetHours = '00', offsetMinutes = '00'] = match;
  if (Number(offsetHours) > 23 || Number(offsetMinutes) > 59) throw invalid();
  let wallClockMs: number;
  try {
    wallClockMs = parseInstantMs(`${day}T${hoursMinutes ?? '00:00'}:${seconds}.${fraction.slice(0, 3).padEnd(3, '0')}Z`, field);
  } catch {
    throw invalid();
  }
  const offsetMs = (sign === '-' ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes)) * 60_000;
  return { at: new Date(wallClockMs - offsetMs), dateOnly: hoursMinutes === undefined };
}

/**
 * The history's time window. `from` is inclusive. A date-time `to` is inclusive; a date `to` means
 * that whole day, so it becomes the exclusive bound at the next day's UTC midnight.
 */
function parseWindow(fromText: string | undefined, toText: string | undefined): { from?: Date; to?: Date; before?: Date } {
  const from = parseDate(fromText, 'from')?.at;
  const to = parseDate(toText, 'to');
  if (!to) return { from };
  if (!to.dateOnly) {
    if (from && from > to.at) throw new HttpProblem(400, 'invalid_date_range', 'from must not be after to');
    return { from, to: to.at };
  }
  const before = new Date(to.at.getTime() + DAY_MS);
  if (from && from >= before) throw new HttpProblem(400, 'invalid_date_range', 'from must not be after to');
  return { from, before };
}

function parseBound(value: string | undefined, currency: string, field: string): bigint | undefined {
  if (value === undefined) return undefined;
  try {
    return parseAmount(value, currency);
  } catch {
    throw new HttpProblem(400, 'invalid_amount', `${field} must be a positive decimal amount in ${currency}`);
  }
}

export async function accountReadRoutes(app: FastifyInstance, context: ReadContext): Promise<void> {
  const visibleAccountFacts = accountFactsCache(context);
  app.get(
    '/v1/accounts/:id',
    {
      config: { access: { roles: ['customer', 'teller', 'auditor', 'admin'], ownership: 'account-param' } },
      schema: {
        tags: ['accounts'],
        summary: 'An account with its balance, available and held amounts',
        params: Type.Object({ id: Uuid }, { additionalProperties: false }),
        querystring: Type.Object({ ...MinPositionQuery }, { additionalProperties: false }),
        response: { 200: AccountView, ...Problems },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      await awaitPosition(request, context.progress, 'accounts', context.readWaitTimeoutMs);
      return accountView(await visibleAccount(context, request, id));
    },
  );

  app.get(
    '/v1/accounts/:id/transactions',
    {
      config: { access: { roles: ['customer', 'teller', 'auditor', 'admin'], ownership: 'account-param' } },
      schema: {
        tags: ['accounts'],
        summary: 'Transaction history, newest first, keyset-paged',
        params: Type.Object({ id: Uuid }, { additionalProperties: false }),
        querystring: TransactionsQuery,
        response: { 200: Type.Object({ items: Type.Array(TransactionView), nextCursor: Type.Union([Type.String(), Type.Null()]) }), ...Problems },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const query = request.query as { from?: string; to?: string; type?: TransactionType; status?: TransactionStatus; minAmount?: string; maxAmount?: string; limit: number; cursor?: string };
      const { from, to, before } = parseWindow(query.from, query.to);
      let beforePosition: bigint | undefined;
      if (query.cursor !== undefined) {
        const cursor = context.cursors.decode(query.cursor);
        beforePosition = cursor.a === id && typeof cursor.p === 'string' ? parseCounter(cursor.p) : undefined;
        if (beforePosition === undefined) throw new HttpProblem(400, 'invalid_cursor', 'the cursor does not belong to this listing');
      }
      // The listing reads two read models: both must have passed the position.
      await awaitPositions(request, context.progress, ['transactions', 'accounts'], context.readWaitTimeoutMs);
      const account = await visibleAccountFacts(request, id);
      const minAmountMinor = parseBound(query.minAmount, account.currency, 'minAmount');
      const maxAmountMinor = parseBound(query.maxAmount, account.currency, 'maxAmount');
      if (minAmountMinor !== undefined && maxAmountMinor !== undefined && minAmountMinor > maxAmountMinor) throw new HttpProblem(400, 'invalid_amount_range', 'minAmount must not exceed maxAmount');
      const rows = await listTransactions(context.db, { accountId: id, from, to, before, type: query.type, status: query.status, minAmountMinor, maxAmountMinor, beforePosition, limit: query.limit + 1 });
      const page = rows.slice(0, query.limit);
      const nextCursor = rows.length > query.limit ? context.cursors.encode({ a: id, p: page.at(-1)!.position.toString() }) : null;
      return { items: page.map(transactionView), nextCursor };
    },
  );
}

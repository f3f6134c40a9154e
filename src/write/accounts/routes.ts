import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { currencyExponent, formatAmount, parseAmount } from '../../domain/money.js';
import { transferHoldsExpiredUncaptured, type AccountEvent, type AccountState } from '../../domain/account.js';
import { isTerminal } from '../../domain/transfer.js';
import { NoBody } from '../../shared/http/app.js';
import { HttpProblem } from '../../shared/http/problem.js';
import { assertOwner, principalOf } from '../../shared/auth/plugin.js';
import { deterministicId } from '../commandHandler.js';
import { Amount, commandContext, Currency, IdempotencyHeaders, markReplay, nowIso, Position, problemResponses, Uuid } from '../http.js';
import { accountStream, customerStream, transferStream } from '../streams.js';
import type { WriteSide } from '../writeSide.js';

const OpenBody = Type.Object(
  {
    customerId: Uuid,
    currency: Currency,
    type: Type.Union([Type.Literal('checking'), Type.Literal('savings')]),
    overdraftLimit: Type.Optional(Type.Union([Amount, Type.Literal('0')])),
  },
  { additionalProperties: false },
);
const AccountOpenedResponse = Type.Object({
  id: Uuid,
  customerId: Uuid,
  currency: Type.String(),
  type: Type.String(),
  status: Type.String(),
  overdraftLimit: Type.String(),
  position: Position,
});
const StatusChanged = Type.Object({ id: Uuid, status: Type.String(), position: Position });
const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false });
const FreezeBody = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false });
const OverdraftBody = Type.Object({ overdraftLimit: Type.Union([Amount, Type.Literal('0')]) }, { additionalProperties: false });

export const accountNotFound = () => new HttpProblem(404, 'account_not_found', 'no such account');

/** Loads an account for an ownership check; a customer sees other customers' accounts as missing. */
export async function loadOwnedAccount(write: WriteSide, request: FastifyRequest, accountId: string): Promise<AccountState> {
  const { state } = await write.accounts.load(accountStream(accountId));
  if (principalOf(request).role === 'customer') assertOwner(request, state.status === 'none' ? undefined : state.customerId, accountNotFound);
  return state;
}

/** No limit is zero, which parseAmount refuses; a zero is still held to the currency's decimals. */
function overdraftMinor(text: string | undefined, currency: string): bigint {
  if (text === undefined) return 0n;
  const zero = /^0(?:\.(0+))?$/.exec(text);
  if (zero && (zero[1] ?? '').length <= currencyExponent(currency)) return 0n;
  return parseAmount(text, currency);
}

export async function accountRoutes(app: FastifyInstance, { write }: { write: WriteSide }): Promise<void> {
  app.post(
    '/v1/accounts',
    {
      config: { access: { roles: ['teller', 'customer'], ownership: 'customer-body' } },
      schema: {
        tags: ['accounts'],
        summary: 'Open an account for an active customer',
        headers: IdempotencyHeaders,
        body: OpenBody,
        response: { 201: AccountOpenedResponse, ...problemResponses(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const body = request.body as { customerId: string; currency: string; type: 'checking' | 'savings'; overdraftLimit?: string };
      const principal = principalOf(request);
      assertOwner(request, body.customerId, () => new HttpProblem(404, 'customer_not_found', 'no such customer'));
      if (body.overdraftLimit !== undefined && principal.role !== 'teller') {
        throw new HttpProblem(403, 'forbidden', 'only staff may set an overdraft limit');
      }
      const overdraftLimitMinor = overdraftMinor(body.overdraftLimit, body.currency);
      const context = commandContext(request);
      const accountId = deterministicId('account', context.idempotencyKey);
      const customer = await write.customers.load(customerStream(body.customerId));
      const result = await write.accounts.handle(accountStream(accountId), {
        type: 'OpenAccount',
        data: { accountId, customerId: body.customerId, customerStatus: customer.state.status, currency: body.currency, accountType: body.type, overdraftLimitMinor, now: nowIso() },
      }, context);
      markReplay(reply, result);
      const opened = result.events.find((event): event is Extract<AccountEvent, { type: 'AccountOpened' }> => event.type === 'AccountOpened');
      if (!opened) throw new HttpProblem(409, 'already_exists', 'this account already exists');
      return reply
        .status(201)
        .header('location', `/v1/accounts/${accountId}`)
        .send({
          id: accountId,
          customerId: opened.data.customerId,
          currency: opened.data.currency,
          type: opened.data.accountType,
          status: 'active',
          overdraftLimit: formatAmount(opened.data.overdraftLimitMinor, opened.data.currency),
          position: result.position.toString(),
        });
    },
  );

  /**
   * Which of the account's transfers with a hold expired uncaptured have ended: terminal is for
   * good, so what is read here stays true by the time the close is decided (a cached terminal state
   * will do; any other is read fresh). A transfer that was never requested has no capture to come
   * either. Only for an account the close could otherwise succeed for; at most this many are looked
   * up, a few at a time, and any others keep the account open.
   */
  const ENDED_TRANSFERS_CHECKED_MAX = 1_000;
  const ENDED_TRANSFER_LOOKUPS_IN_FLIGHT = 8;
  const endedTransfersOf = async (accountId: string): Promise<string[]> => {
    const { state } = await write.accounts.load(accountStream(accountId));
    if (state.status === 'none' || state.balanceMinor !== 0n) return [];
    const candidates = transferHoldsExpiredUncaptured(state).slice(0, ENDED_TRANSFERS_CHECKED_MAX);
    const ended: string[] = [];
    const hasEnded = async (transferId: string) => {
      const stream = transferStream(transferId);
      const cached = (await write.transfers.peek(stream)).state;
      const transfer = isTerminal(cached) ? cached : (await write.transfers.load(stream)).state;
      return transfer.status === 'none' || isTerminal(transfer);
    };
    for (let start = 0; start < candidates.length; start += ENDED_TRANSFER_LOOKUPS_IN_FLIGHT) {
      const slice = candidates.slice(start, start + ENDED_TRANSFER_LOOKUPS_IN_FLIGHT);
      const results = await Promise.all(slice.map(hasEnded));
      for (const [index, transferId] of slice.entries()) if (results[index]) ended.push(transferId);
    }
    return ended;
  };

  const transitions = [
    { action: 'freeze', type: 'FreezeAccount', status: 'frozen', roles: ['teller'] },
    { action: 'unfreeze', type: 'UnfreezeAccount', status: 'active', roles: ['teller'] },
    { action: 'close', type: 'CloseAccount', status: 'closed', roles: ['admin'] },
  ] as const;
  for (const transition of transitions) {
    app.post(
      `/v1/accounts/:id/${transition.action}`,
      {
        config: { access: { roles: transition.roles } },
        schema: {
          tags: ['accounts'],
          summary: `${transition.action[0]!.toUpperCase()}${transition.action.slice(1)} an account`,
          headers: IdempotencyHeaders,
          params: IdParams,
          body: transition.action === 'freeze' ? FreezeBody : NoBody,
          response: { 200: StatusChanged, ...problemResponses(400, 401, 403, 404, 409, 422) },
        },
      },
      async (request, reply) => {
        const { id } = request.params as { id: string };
        const context = commandContext(request);
        const data = {
          accountId: id,
          now: nowIso(),
          ...(transition.action === 'freeze' ? { reason: (request.body as { reason?: string } | undefined)?.reason ?? null } : {}),
          ...(transition.action === 'close' ? { endedTransferIds: await endedTransfersOf(id) } : {}),
        };
        const result = await write.accounts.handle(accountStream(id), { type: transition.type, data } as never, context);
        markReplay(reply, result);
        return { id, status: transition.status, position: result.position.toString() };
      },
    );
  }

  app.post(
    '/v1/accounts/:id/overdraft',
    {
      config: { access: { roles: ['admin'] } },
      schema: {
        tags: ['accounts'],
        summary: 'Set the overdraft limit (staff only)',
        headers: IdempotencyHeaders,
        params: IdParams,
        body: OverdraftBody,
        response: { 200: Type.Object({ id: Uuid, overdraftLimit: Type.String(), position: Position }), ...problemResponses(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const { overdraftLimit } = request.body as { overdraftLimit: string };
      const context = commandContext(request);
      const { state } = await write.accounts.load(accountStream(id));
      if (state.status === 'none') throw accountNotFound();
      const overdraftLimitMinor = overdraftMinor(overdraftLimit, state.currency);
      const result = await write.accounts.handle(accountStream(id), { type: 'SetOverdraftLimit', data: { accountId: id, overdraftLimitMinor, now: nowIso() } }, context);
      markReplay(reply, result);
      return { id, overdraftLimit: formatAmount(overdraftLimitMinor, state.currency), position: result.position.toString() };
    },
  );
}

import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { formatAmount, parseAmount } from '../../domain/money.js';
import type { AccountEvent, AccountState } from '../../domain/account.js';
import { NoBody } from '../../shared/http/app.js';
import { HttpProblem } from '../../shared/http/problem.js';
import { deterministicId } from '../commandHandler.js';
import { Amount, commandContext, Currency, IdempotencyHeaders, markReplay, normaliseInstant, nowIso, OptionalText, Position, problemResponses, Uuid } from '../http.js';
import { accountStream } from '../streams.js';
import type { WriteSide } from '../writeSide.js';

const MovementBody = Type.Object(
  { amount: Amount, currency: Currency, reference: OptionalText(100), description: OptionalText(500) },
  { additionalProperties: false },
);
const MovementResponse = Type.Object({
  transactionId: Uuid,
  accountId: Uuid,
  type: Type.String(),
  amount: Type.String(),
  currency: Type.String(),
  balanceAfter: Type.String(),
  position: Position,
});
const HoldBody = Type.Object(
  { holdId: Uuid, amount: Amount, currency: Currency, expiresAt: Type.String({ format: 'date-time', maxLength: 40 }), reference: OptionalText(100), description: OptionalText(500) },
  { additionalProperties: false },
);
const HoldResponse = Type.Object({
  holdId: Uuid,
  accountId: Uuid,
  status: Type.String(),
  amount: Type.String(),
  currency: Type.String(),
  expiresAt: Type.Optional(Type.String()),
  held: Type.Optional(Type.String()),
  available: Type.Optional(Type.String()),
  captured: Type.Optional(Type.String()),
  released: Type.Optional(Type.String()),
  balanceAfter: Type.Optional(Type.String()),
  position: Position,
});
const CaptureBody = Type.Object({ amount: Type.Optional(Amount) }, { additionalProperties: false });
const AccountParams = Type.Object({ id: Uuid }, { additionalProperties: false });
const HoldParams = Type.Object({ id: Uuid, holdId: Uuid }, { additionalProperties: false });

/**
 * UUIDs are the same in any case (RFC 9562): "2170CA49-…" is the hold "2170ca49-…", not a second one
 * reserving the funds again. Lower case, unless a hold was placed under this exact spelling before
 * ids were normalised (it must still be found as spelled).
 */
function holdIdOf(raw: string, state: AccountState): string {
  return raw === raw.toLowerCase() || (state.status !== 'none' && state.holds.has(raw)) ? raw : raw.toLowerCase();
}

type MovementInput = { amount: string; currency: string; reference?: string | null; description?: string | null };

function single<Type extends AccountEvent['type']>(events: AccountEvent[], type: Type): Extract<AccountEvent, { type: Type }> {
  const event = events.find((candidate): candidate is Extract<AccountEvent, { type: Type }> => candidate.type === type);
  if (!event) throw new HttpProblem(409, 'already_applied', 'this operation was already applied');
  return event;
}

export async function movementRoutes(app: FastifyInstance, { write }: { write: WriteSide }): Promise<void> {
  for (const movement of [
    { path: 'deposits', command: 'Deposit', event: 'FundsDeposited', type: 'deposit', summary: 'Deposit cash into an account' },
    { path: 'withdrawals', command: 'Withdraw', event: 'FundsWithdrawn', type: 'withdrawal', summary: 'Withdraw cash from an account' },
  ] as const) {
    app.post(
      `/v1/accounts/:id/${movement.path}`,
      {
        config: { access: { roles: ['teller'] } },
        schema: {
          tags: ['movements'],
          summary: movement.summary,
          headers: IdempotencyHeaders,
          params: AccountParams,
          body: MovementBody,
          response: { 201: MovementResponse, ...problemResponses(400, 401, 403, 404, 409, 422) },
        },
      },
      async (request, reply) => {
        const { id } = request.params as { id: string };
        const body = request.body as MovementInput;
        const amountMinor = parseAmount(body.amount, body.currency);
        const context = commandContext(request);
        const transactionId = deterministicId('transaction', context.idempotencyKey);
        const result = await write.accounts.handle(accountStream(id), {
          type: movement.command,
          data: { accountId: id, transactionId, currency: body.currency, amountMinor, reference: body.reference ?? null, description: body.description ?? null, now: nowIso() },
        }, context);
        markReplay(reply, result);
        const moved = single(result.events, movement.event);
        return reply.status(201).send({
          transactionId: moved.data.transactionId,
          accountId: id,
          type: movement.type,
          amount: formatAmount(moved.data.amountMinor, moved.data.currency),
          currency: moved.data.currency,
          balanceAfter: formatAmount(moved.data.balanceAfterMinor, moved.data.currency),
          position: result.position.toString(),
        });
      },
    );
  }

  app.post(
    '/v1/accounts/:id/holds',
    {
      config: { access: { roles: ['teller'] } },
      schema: {
        tags: ['movements'],
        summary: 'Reserve funds with a hold that expires',
        headers: IdempotencyHeaders,
        params: AccountParams,
        body: HoldBody,
        response: { 201: HoldResponse, ...problemResponses(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const body = request.body as MovementInput & { holdId: string; expiresAt: string };
      const amountMinor = parseAmount(body.amount, body.currency);
      const expiresAt = normaliseInstant(body.expiresAt, 'expiresAt');
      const context = commandContext(request);
      const holdId = holdIdOf(body.holdId, (await write.accounts.load(accountStream(id))).state);
      const result = await write.accounts.handle(accountStream(id), {
        type: 'PlaceHold',
        data: { accountId: id, holdId, currency: body.currency, amountMinor, expiresAt, reference: body.reference ?? null, description: body.description ?? null, now: nowIso() },
      }, context);
      markReplay(reply, result);
      const placed = single(result.events, 'HoldPlaced');
      const currency = placed.data.currency;
      return reply.status(201).send({
        holdId: placed.data.holdId,
        accountId: id,
        status: 'active',
        amount: formatAmount(placed.data.amountMinor, currency),
        currency,
        expiresAt: placed.data.expiresAt,
        held: formatAmount(placed.data.heldAfterMinor, currency),
        available: formatAmount(placed.data.availableAfterMinor, currency),
        position: result.position.toString(),
      });
    },
  );

  app.post(
    '/v1/accounts/:id/holds/:holdId/capture',
    {
      config: { access: { roles: ['teller'] } },
      schema: {
        tags: ['movements'],
        summary: 'Capture a hold in full or in part; the rest is released',
        headers: IdempotencyHeaders,
        params: HoldParams,
        body: CaptureBody,
        response: { 200: HoldResponse, ...problemResponses(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const { id, holdId: rawHoldId } = request.params as { id: string; holdId: string };
      const amount = (request.body as { amount?: string } | undefined)?.amount;
      const context = commandContext(request);
      const { state } = await write.accounts.load(accountStream(id));
      if (state.status === 'none') throw new HttpProblem(404, 'account_not_found', 'no such account');
      const holdId = holdIdOf(rawHoldId, state);
      const amountMinor = amount === undefined ? undefined : parseAmount(amount, state.currency);
      const result = await write.accounts.handle(accountStream(id), {
        type: 'CaptureHold',
        data: { accountId: id, holdId, ...(amountMinor === undefined ? {} : { amountMinor }), now: nowIso() },
      }, context);
      markReplay(reply, result);
      const captured = single(result.events, 'HoldCaptured');
      const currency = captured.data.currency;
      return {
        holdId,
        accountId: id,
        status: 'captured',
        amount: formatAmount(captured.data.capturedMinor + captured.data.releasedMinor, currency),
        currency,
        captured: formatAmount(captured.data.capturedMinor, currency),
        released: formatAmount(captured.data.releasedMinor, currency),
        balanceAfter: formatAmount(captured.data.balanceAfterMinor, currency),
        held: formatAmount(captured.data.heldAfterMinor, currency),
        position: result.position.toString(),
      };
    },
  );

  app.post(
    '/v1/accounts/:id/holds/:holdId/release',
    {
      config: { access: { roles: ['teller'] } },
      schema: {
        tags: ['movements'],
        summary: 'Release a hold',
        headers: IdempotencyHeaders,
        params: HoldParams,
        body: NoBody,
        response: { 200: HoldResponse, ...problemResponses(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const { id, holdId: rawHoldId } = request.params as { id: string; holdId: string };
      const context = commandContext(request);
      const holdId = holdIdOf(rawHoldId, (await write.accounts.load(accountStream(id))).state);
      const result = await write.accounts.handle(accountStream(id), { type: 'ReleaseHold', data: { accountId: id, holdId, now: nowIso() } }, context);
      markReplay(reply, result);
      const released = single(result.events, 'HoldReleased');
      const currency = released.data.currency;
      return {
        holdId,
        accountId: id,
        status: 'released',
        amount: formatAmount(released.data.amountMinor, currency),
        currency,
        released: formatAmount(released.data.amountMinor, currency),
        held: formatAmount(released.data.heldAfterMinor, currency),
        position: result.position.toString(),
      };
    },
  );
}

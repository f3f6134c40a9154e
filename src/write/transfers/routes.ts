import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { parseAmount } from '../../domain/money.js';
import { BusinessRuleError } from '../../domain/errors.js';
import { actorOf, idempotencyScopeOf } from '../../shared/auth/principal.js';
import { assertOwner, principalOf } from '../../shared/auth/plugin.js';
import { HttpProblem } from '../../shared/http/problem.js';
import { requestFingerprints } from '../../shared/requestFingerprint.js';
import { Amount, Currency, markReplay, nowIso, OptionalText, Position, problemResponses, Uuid } from '../http.js';
import { accountStream, transferStream } from '../streams.js';
import type { TransferAdmission } from './admission.js';
import type { WriteSide } from '../writeSide.js';
import type { RecordedByWriteApi } from './processManager.js';

const TransferBody = Type.Object(
  { transferId: Uuid, fromAccountId: Uuid, toAccountId: Uuid, amount: Amount, currency: Currency, description: OptionalText(500) },
  { additionalProperties: false },
);
const Accepted = Type.Object({ id: Uuid, status: Type.Literal('pending'), position: Position });

export interface TransferTimings {
  deadlineMs: number;
  holdGraceMs: number;
}

/**
 * POST /v1/transfers records TransferRequested and nothing else; the process manager moves the
 * money. The client's transfer id is the idempotency key.
 */
export async function transferRoutes(app: FastifyInstance, {
    write,
    timings,
    admission,
    handOff,
  }: {
    write: WriteSide;
    timings: TransferTimings;
    admission?: TransferAdmission;
    /** The process manager of this process, when it runs here: it starts on the transfer at once. */
    handOff?: (event: RecordedByWriteApi) => boolean;
  }): Promise<void> {
  app.post(
    '/v1/transfers',
    {
      config: { access: { roles: ['customer', 'teller'], ownership: 'transfer-source' }, idempotencyKeyInBody: true },
      schema: {
        tags: ['transfers'],
        summary: 'Request a transfer between two accounts of one currency (202; follow Location)',
        body: TransferBody,
        response: { 202: Accepted, ...problemResponses(400, 401, 403, 404, 409, 422, 503) },
      },
    },
    async (request, reply) => {
      const raw = request.body as { transferId: string; fromAccountId: string; toAccountId: string; amount: string; currency: string; description?: string | null };
      // UUIDs are the same in any case (RFC 9562): "D5D9…" must be the transfer "d5d9…", not a second
      // one moving the money again. Lower case, unless a transfer was recorded under this exact
      // spelling before ids were normalised (its retries must still find it).
      const body = {
        ...raw,
        transferId: raw.transferId === raw.transferId.toLowerCase() || (await write.transfers.peek(transferStream(raw.transferId))).state.status !== 'none' ? raw.transferId : raw.transferId.toLowerCase(),
        fromAccountId: raw.fromAccountId.toLowerCase(),
        toAccountId: raw.toAccountId.toLowerCase(),
      };
      const principal = principalOf(request);
      const amountMinor = parseAmount(body.amount, body.currency);
      if (body.fromAccountId === body.toAccountId) throw new BusinessRuleError('same_account_transfer', 'a transfer needs two different accounts');
      // Owner and currency never change once an account exists, so a cached account answers.
      const [from, to] = await Promise.all([write.accounts.peek(accountStream(body.fromAccountId)), write.accounts.peek(accountStream(body.toAccountId))]);
      const missing = (what: string) => new HttpProblem(404, 'account_not_found', `no such ${what} account`);
      assertOwner(request, from.state.status === 'none' ? undefined : from.state.customerId, () => missing('source'));
      if (from.state.status === 'none') throw missing('source');
      if (to.state.status === 'none') throw missing('destination');
      if (from.state.currency !== to.state.currency) throw new BusinessRuleError('cross_currency_transfer', 'transfers between currencies are not supported');
      if (body.currency !== from.state.currency) throw new BusinessRuleError('currency_mismatch', `the accounts hold ${from.state.currency}`);

      const idempotencyKey = `${idempotencyScopeOf(principal)}:transfer:${body.transferId}`;
      // After every check of the request, so bad input is told so even while transfers are refused.
      // A repeat of a transfer this process remembers is answered as recorded, backlog or not. Only
      // from memory: at saturation half the requests are refused, and that path must stay cheap; a
      // repeat at another instance gets the 503, and its retry the answer.
      await admission?.admit().catch((refusal: unknown) => {
        if (!write.transfers.remembers(transferStream(body.transferId), idempotencyKey)) throw refusal;
      });
      const now = nowIso();
      const deadlineAt = new Date(Date.parse(now) + timings.deadlineMs).toISOString();
      const holdExpiresAt = new Date(Date.parse(now) + timings.deadlineMs + timings.holdGraceMs).toISOString();
      const actor = actorOf(principal);
      const context = {
        idempotencyKey,
        ...requestFingerprints('POST', '/v1/transfers', body),
        actor,
        correlationId: body.transferId,
      };
      let result;
      try {
        result = await write.transfers.handle(transferStream(body.transferId), {
          type: 'RequestTransfer',
          data: { transferId: body.transferId, fromAccountId: body.fromAccountId, toAccountId: body.toAccountId, currency: body.currency, amountMinor, description: body.description ?? null, deadlineAt, holdExpiresAt, now },
        }, context);
        markReplay(reply, result);
      } catch (error) {
        if (error instanceof BusinessRuleError && error.code === 'already_exists') throw new HttpProblem(409, 'transfer_exists', 'a transfer with this id already exists');
        // The transfer id is the idempotency key here: say so, as the caller sent no other.
        if (error instanceof HttpProblem && error.code === 'idempotency_key_reused') throw new HttpProblem(422, 'idempotency_key_reused', 'this transfer id was already used with a different request');
        throw error;
      }
      // A repeat's transfer was handed on (or delivered by the log) when it was first recorded.
      const requested = result.events[0];
      if (handOff && !result.replayed && requested) handOff({ id: result.eventIds[0]!, streamName: transferStream(body.transferId), type: requested.type, data: requested.data });
      return reply.status(202).header('location', `/v1/transfers/${body.transferId}`).send({ id: body.transferId, status: 'pending', position: result.position.toString() });
    },
  );
}

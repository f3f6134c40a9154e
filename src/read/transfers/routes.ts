import { Type } from '@sinclair/typebox';
import { sql } from 'kysely';
import type { FastifyInstance } from 'fastify';
import { formatAmount } from '../../domain/money.js';
import { findAccount } from '../../projections/accounts/query.js';
import { findTransfer, pendingTransfersRequestedBefore, type TransferRow } from '../../projections/transfers/query.js';
import { principalOf } from '../../shared/auth/plugin.js';
import { HttpProblem } from '../../shared/http/problem.js';
import { awaitPositions, MinPositionQuery } from '../http.js';
import type { ReadContext } from '../plugin.js';

const TransferView = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('completed'), Type.Literal('failed')]),
  stage: Type.String(),
  reason: Type.Optional(Type.String()),
  fromAccountId: Type.String(),
  toAccountId: Type.String(),
  amount: Type.String(),
  currency: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  requestedAt: Type.String(),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  timeline: Type.Array(Type.Object({ stage: Type.String(), at: Type.String(), position: Type.String(), reason: Type.Optional(Type.String()) })),
  position: Type.String(),
});

const notFound = () => new HttpProblem(404, 'transfer_not_found', 'no such transfer');

/** Past its deadline a transfer is fenced and ends within moments; a minute more makes it overdue. */
const OVERDUE_MARGIN_MS = 60_000;
const OVERDUE_PAGE_MAX = 200;

const OverdueQuery = Type.Object(
  {
    minAgeSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 31_622_400, description: 'requested at least this long ago; by default the transfer deadline and a minute' })),
    limit: Type.Integer({ minimum: 1, maximum: OVERDUE_PAGE_MAX, default: 100 }),
    cursor: Type.Optional(Type.String({ maxLength: 512, description: "the previous page's nextCursor; the list keeps that page's requestedBefore" })),
  },
  { additionalProperties: false },
);

function transferView(transfer: TransferRow) {
  return {
    id: transfer.transfer_id,
    status: transfer.status,
    stage: transfer.stage,
    ...(transfer.reason ? { reason: transfer.reason } : {}),
    fromAccountId: transfer.from_account_id,
    toAccountId: transfer.to_account_id,
    amount: formatAmount(transfer.amount_minor, transfer.currency),
    currency: transfer.currency,
    description: transfer.description,
    requestedAt: transfer.requested_at.toISOString(),
    finishedAt: transfer.finished_at?.toISOString() ?? null,
    timeline: transfer.timeline,
    position: transfer.last_position.toString(),
  };
}

const PAYEE_STAGES = new Set(['credited', 'completed']);

function payeeView(transfer: TransferRow) {
  const { reason: _reason, ...view } = transferView(transfer);
  return { ...view, timeline: view.timeline.filter((entry) => PAYEE_STAGES.has(entry.stage)) };
}

export async function transferReadRoutes(app: FastifyInstance, context: ReadContext): Promise<void> {
  app.get(
    '/v1/transfers/:id',
    {
      config: { access: { roles: ['customer', 'teller', 'auditor', 'admin'], ownership: 'transfer-param' } },
      schema: {
        tags: ['transfers'],
        summary: 'A transfer with its status and timeline',
        params: Type.Object({ id: Type.String({ format: 'uuid', maxLength: 36 }) }, { additionalProperties: false }),
        querystring: Type.Object({ ...MinPositionQuery }, { additionalProperties: false }),
        response: { 200: TransferView, 400: Type.Ref('Problem'), 401: Type.Ref('Problem'), 403: Type.Ref('Problem'), 404: Type.Ref('Problem'), 503: Type.Ref('Problem') },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const principal = principalOf(request);
      // A customer's answer also reads the accounts read model, for the owners: it must have passed the position too.
      await awaitPositions(request, context.progress, principal.role === 'customer' ? ['transfers', 'accounts'] : ['transfers'], context.readWaitTimeoutMs);
      // Transfers are recorded under the lower-case id; one recorded before that is found as spelled.
      const transfer = (await findTransfer(context.db, id)) ?? (id === id.toLowerCase() ? undefined : await findTransfer(context.db, id.toLowerCase()));
      if (!transfer) throw notFound();
      if (principal.role === 'customer') {
        const [from, to] = await Promise.all([findAccount(context.db, transfer.from_account_id), findAccount(context.db, transfer.to_account_id)]);
        if (from?.customer_id !== principal.subject) {
          // The payee sees a payment once it reached their account, without the payer's side: a
          // failure reason (insufficient funds, a frozen account) or the hold says something of the
          // payer's account, and a transfer that never credited them is none of theirs.
          if (to?.customer_id !== principal.subject || !transfer.timeline.some((entry) => entry.stage === 'credited')) throw notFound();
          return payeeView(transfer);
        }
      }
      return transferView(transfer);
    },
  );

  // Every accepted transfer must end: the auditors' list of those that have not, past their deadline.
  app.get(
    '/v1/audit/overdue-transfers',
    {
      config: { access: { roles: ['auditor', 'admin'] } },
      schema: {
        tags: ['audit'],
        summary: 'Transfers still pending well past their deadline, oldest first',
        querystring: OverdueQuery,
        response: {
          200: Type.Object({
            requestedBefore: Type.String(),
            asOfPosition: Type.String({ description: 'the log position the transfers read model has applied' }),
            transfers: Type.Array(TransferView),
            more: Type.Boolean(),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          400: Type.Ref('Problem'),
          401: Type.Ref('Problem'),
          403: Type.Ref('Problem'),
        },
      },
    },
    async (request) => {
      const { minAgeSeconds, limit, cursor } = request.query as { minAgeSeconds?: number; limit: number; cursor?: string };
      let requestedBefore = new Date(Date.now() - (minAgeSeconds === undefined ? context.transferDeadlineMs + OVERDUE_MARGIN_MS : minAgeSeconds * 1_000));
      let after: { requestedAt: Date; transferId: string } | undefined;
      if (cursor !== undefined) {
        const decoded = context.cursors.decode(cursor);
        const [before, requestedAt] = [new Date(decoded.b ?? ''), new Date(decoded.r ?? '')];
        if (decoded.l !== 'overdue' || typeof decoded.i !== 'string' || Number.isNaN(before.getTime()) || Number.isNaN(requestedAt.getTime())) throw new HttpProblem(400, 'invalid_cursor', 'the cursor does not belong to this listing');
        requestedBefore = before;
        after = { requestedAt, transferId: decoded.i };
      }
      // The position first: the rows read after it reflect at least that much of the log.
      const checkpoint = await sql<{ position: bigint }>`select position from projection_checkpoints where name = 'transfers'`.execute(context.db);
      const rows = await pendingTransfersRequestedBefore(context.db, requestedBefore, limit, after);
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        requestedBefore: requestedBefore.toISOString(),
        asOfPosition: (checkpoint.rows[0]?.position ?? 0n).toString(),
        transfers: page.map(transferView),
        more: rows.length > limit,
        nextCursor: rows.length > limit && last ? context.cursors.encode({ l: 'overdue', b: requestedBefore.toISOString(), r: last.requested_at.toISOString(), i: last.transfer_id }) : null,
      };
    },
  );
}

import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { clearingLedgerAccount, isAuditBalanced, trialBalanceTotals } from '../../domain/ledger.js';
import { assertValidStreamName, MAX_PAGE_SIZE, type EventStore } from '../../eventstore/port.js';
import { HttpProblem } from '../../shared/http/problem.js';
import { COUNTER_PATTERN, parseCounter } from '../http.js';
import { AuditEvent, auditEventView } from './eventView.js';
import { auditLog, type LogAudit } from './trialBalance.js';

const access = { roles: ['auditor'] } as const;
/** The trial balance reads the whole log; past this many events an auditor uses `ledger audit trial-balance`. */
const TRIAL_BALANCE_EVENTS_MAX = 2_000_000;

/** Auditors replay any stream and recompute the trial balance straight from the log. */
export async function auditRoutes(app: FastifyInstance, { store }: { store: EventStore }): Promise<void> {
  // One whole-log read at a time in this process: auditors asking at once share it.
  let trialBalanceRunning: Promise<LogAudit> | null = null;

  app.get(
    '/v1/audit/streams/:streamName',
    {
      config: { access },
      schema: {
        tags: ['audit'],
        summary: "Replay a stream's events from a revision",
        params: Type.Object({ streamName: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
        querystring: Type.Object({ fromRevision: Type.String({ pattern: COUNTER_PATTERN, default: '0', description: 'the first revision to read' }), limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: 100 }) }, { additionalProperties: false }),
        response: { 200: Type.Object({ streamName: Type.String(), events: Type.Array(AuditEvent) }), 400: Type.Ref('Problem'), 401: Type.Ref('Problem'), 403: Type.Ref('Problem') },
      },
    },
    async (request) => {
      const { streamName } = request.params as { streamName: string };
      const query = request.query as { fromRevision: string; limit: number };
      try {
        assertValidStreamName(streamName);
      } catch {
        throw new HttpProblem(400, 'invalid_stream_name', 'not a stream name');
      }
      const fromRevision = parseCounter(query.fromRevision);
      if (fromRevision === undefined) throw new HttpProblem(400, 'invalid_revision', 'fromRevision must be a stream revision');
      const events = await store.readStream(streamName, { fromRevision, maxCount: query.limit });
      return {
        streamName,
        events: events.map(auditEventView),
      };
    },
  );

  app.get(
    '/v1/audit/trial-balance',
    {
      config: { access },
      schema: {
        tags: ['audit'],
        summary: 'Sum every journal leg in the log per currency; each must be zero, and every posting valid',
        response: {
          200: Type.Object({
            events: Type.Integer(),
            throughPosition: Type.String({ description: 'the last log position summed' }),
            balanced: Type.Boolean(),
            currencies: Type.Array(Type.Object({ currency: Type.String(), sumMinor: Type.String(), clearingMinor: Type.String() })),
            exceptionCount: Type.Integer({ description: 'events whose posting is not valid (unbalanced, malformed legs)' }),
            exceptions: Type.Array(
              Type.Object({ position: Type.String(), eventId: Type.String(), streamName: Type.String(), type: Type.String(), problem: Type.String() }),
              { description: 'the first 100 of them, in log order' },
            ),
          }),
          401: Type.Ref('Problem'),
          403: Type.Ref('Problem'),
          503: Type.Ref('Problem'),
        },
      },
    },
    async () => {
      trialBalanceRunning ??= auditLog(store, TRIAL_BALANCE_EVENTS_MAX).finally(() => {
        trialBalanceRunning = null;
      });
      const { audit, events, throughPosition, complete } = await trialBalanceRunning;
      if (!complete) throw new HttpProblem(503, 'log_too_large', 'the log is too large for an online trial balance; run `ledger audit trial-balance`');
      const { trial } = audit;
      const currencies = [...trialBalanceTotals(trial)].map(([currency, sumMinor]) => ({
        currency,
        sumMinor: sumMinor.toString(),
        clearingMinor: (trial.get(currency)?.get(clearingLedgerAccount(currency)) ?? 0n).toString(),
      }));
      return {
        events,
        throughPosition: throughPosition.toString(),
        balanced: isAuditBalanced(audit),
        currencies,
        exceptionCount: audit.exceptionCount,
        exceptions: audit.exceptions.map((exception) => ({ ...exception, position: exception.position.toString() })),
      };
    },
  );
}

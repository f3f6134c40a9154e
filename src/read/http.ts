import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { HttpProblem } from '../shared/http/problem.js';
import type { ProjectionProgress } from './progress.js';

/** PostgreSQL's bigint holds every log position and stream revision: a larger one cannot exist. */
const INT64_MAX = 2n ** 63n - 1n;
export const COUNTER_PATTERN = '^[0-9]{1,20}$';
const COUNTER_TEXT = new RegExp(COUNTER_PATTERN);

/** A log position or stream revision given as text, or undefined when no such one can exist. */
export function parseCounter(text: string): bigint | undefined {
  if (!COUNTER_TEXT.test(text)) return undefined;
  const value = BigInt(text);
  return value <= INT64_MAX ? value : undefined;
}

export const MinPositionQuery = { minPosition: Type.Optional(Type.String({ pattern: COUNTER_PATTERN, description: 'wait until the read model has applied this log position' })) };

/** Bounded read-your-writes wait; a read model that has not caught up answers 503, never stale data as fresh. */
export async function awaitPosition(request: FastifyRequest, progress: ProjectionProgress, projection: string, timeoutMs: number): Promise<void> {
  await awaitPositions(request, progress, [projection], timeoutMs);
}

/**
 * The same wait for a query that reads several read models: they are waited for together, against
 * one bound, so the worst case is the documented bound and not that bound once per read model.
 */
export async function awaitPositions(request: FastifyRequest, progress: ProjectionProgress, projections: readonly string[], timeoutMs: number): Promise<void> {
  const fromQuery = (request.query as { minPosition?: string } | undefined)?.minPosition;
  const fromHeader = request.headers['x-min-position'];
  const raw = fromQuery ?? (typeof fromHeader === 'string' ? fromHeader : undefined);
  if (raw === undefined) return;
  const position = parseCounter(raw);
  if (position === undefined) throw new HttpProblem(400, 'invalid_min_position', 'minPosition must be a log position from a command answer');
  const reached = await Promise.all(projections.map((projection) => progress.waitFor(projection, position, timeoutMs)));
  const behind = projections.filter((_, index) => !reached[index]);
  if (behind.length === 1) throw new HttpProblem(503, 'read_model_behind', `the ${behind[0]} read model has not reached position ${raw} yet`, { 'retry-after': '1' });
  if (behind.length > 1) throw new HttpProblem(503, 'read_model_behind', `the ${behind.join(' and ')} read models have not reached position ${raw} yet`, { 'retry-after': '1' });
}

/** Opaque, tamper-evident keyset cursors: base64url(JSON) plus an HMAC over it. */
export class CursorCodec {
  private readonly key: Buffer;
  constructor(secret: string) {
    this.key = createHash('sha256').update('ledger-cursor\u0000').update(secret).digest();
  }

  encode(value: Record<string, string>): string {
    const body = Buffer.from(JSON.stringify(value)).toString('base64url');
    return `${body}.${this.sign(body)}`;
  }

  decode(cursor: string): Record<string, string> {
    // Made only when thrown: an error captures a stack trace, which cost more than the HMAC.
    const invalid = () => new HttpProblem(400, 'invalid_cursor', 'the cursor is malformed or was altered');
    const [body, signature, ...rest] = cursor.split('.');
    if (!body || !signature || rest.length > 0 || cursor.length > 512) throw invalid();
    const expected = Buffer.from(this.sign(body));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw invalid();
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      throw invalid();
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid();
    return value as Record<string, string>;
  }

  private sign(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}

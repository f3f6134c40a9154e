import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { actorOf, idempotencyScopeOf } from '../shared/auth/principal.js';
import { principalOf } from '../shared/auth/plugin.js';
import { HttpProblem } from '../shared/http/problem.js';
import { requestFingerprints } from '../shared/requestFingerprint.js';
import { REPLAY_HEADER } from '../shared/security/idempotencyCache.js';
import type { CommandContext, CommandResult } from './commandHandler.js';

export const Uuid = Type.String({ format: 'uuid', maxLength: 36 });
/** A decimal string in major units; the currency's exponent is checked by the domain. */
export const Amount = Type.String({ pattern: '^(0|[1-9][0-9]{0,20})(\\.[0-9]{1,10})?$', maxLength: 32, description: 'decimal string in major units, e.g. "12.34"' });
export const Currency = Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217 code' });
export const OptionalText = (maxLength: number) => Type.Optional(Type.Union([Type.String({ maxLength }), Type.Null()]));
export const Position = Type.String({ pattern: '^[0-9]+$', description: 'global log position of the events written; pass as minPosition to read your writes' });

export const IdempotencyHeaders = Type.Object(
  { 'idempotency-key': Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7E]+$' }) },
  { additionalProperties: true },
);

export const problemResponses = (...statuses: number[]): Record<number, TSchema> =>
  Object.fromEntries(statuses.map((status) => [status, Type.Ref('Problem')]));

/**
 * The command's context: the idempotency key scoped to the principal (a key never crosses
 * principals) and a fingerprint of the request so that a reused key with another request is refused.
 */
export function commandContext(request: FastifyRequest, body: unknown = request.body): CommandContext {
  const principal = principalOf(request);
  const key = request.headers['idempotency-key'];
  if (typeof key !== 'string' || key.length === 0) throw new HttpProblem(400, 'missing_idempotency_key', 'the Idempotency-Key header is required');
  return {
    idempotencyKey: `${idempotencyScopeOf(principal)}:${key}`,
    ...requestFingerprints(request.method, request.routeOptions.url, request.params, body),
    actor: actorOf(principal),
    correlationId: typeof request.headers['x-correlation-id'] === 'string' ? request.headers['x-correlation-id'].slice(0, 100) : request.id,
  };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's idempotency key is in its body (a transfer's id): an Idempotency-Key header plays no part. */
    idempotencyKeyInBody?: true;
  }
}

/**
 * The command context of a request that carries an Idempotency-Key, else undefined. Checked, not
 * thrown: an exception per request is costly. A route keyed by its body has none: the response
 * cache must not refuse two transfers for sharing a header the route does not use.
 */
export function keyedCommandContext(request: FastifyRequest): CommandContext | undefined {
  if (request.routeOptions.config.idempotencyKeyInBody) return undefined;
  const key = request.headers['idempotency-key'];
  return typeof key === 'string' && key.length > 0 ? commandContext(request) : undefined;
}

/**
 * A repeat answered from the log (the command was recorded under this key before) says so, as one
 * answered from the response cache does: the header must not depend on which of the two answered.
 */
export function markReplay<T extends Pick<CommandResult<never>, 'replayed'>>(reply: FastifyReply, result: T): T {
  if (result.replayed) void reply.header(REPLAY_HEADER, 'true');
  return result;
}

export function nowIso(): string {
  return new Date().toISOString();
}

/** Client timestamps are normalised to the domain's form: UTC, milliseconds. */
export function normaliseInstant(value: string, field: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new HttpProblem(400, 'invalid_timestamp', `${field} is not a valid date-time`);
  return new Date(ms).toISOString();
}


import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Logger } from 'pino';
import { HttpProblem } from '../http/problem.js';
import { isSameRequest } from '../requestFingerprint.js';
import type { RedisHandle } from './redis.js';

export const IDEMPOTENCY_CACHE_TTL_SECONDS = 24 * 60 * 60;
const LOCAL_ENTRIES_MAX = 10_000;
const PAYLOAD_BYTES_MAX = 64 * 1024;
const REDIS_KEY_PREFIX = 'ledger:idem:';
export const REPLAY_HEADER = 'idempotent-replayed';

/** A 2xx answer remembered for its principal-scoped idempotency key. */
export interface CachedResponse {
  requestHash: string;
  canonicalRequestHash?: string;
  status: number;
  payload: string;
  contentType: string;
  location?: string;
}

export interface IdempotencyScope {
  /** The principal-scoped idempotency key. */
  idempotencyKey: string;
  requestHash: string;
  canonicalRequestHash?: string;
}

export interface ResponseCache {
  get(key: string): Promise<CachedResponse | undefined>;
  /** Stores only when nothing is stored under the key yet: the first answer wins. */
  put(key: string, value: CachedResponse): Promise<void>;
}

export function idempotencyCacheKey(scopedIdempotencyKey: string): string {
  return REDIS_KEY_PREFIX + createHash('sha256').update(scopedIdempotencyKey).digest('hex');
}

/** The stand-in without Redis: bounded, least recently used dropped first, entries expire. */
export function localResponseCache(entriesMax = LOCAL_ENTRIES_MAX, ttlSeconds = IDEMPOTENCY_CACHE_TTL_SECONDS): ResponseCache {
  const entries = new Map<string, { value: CachedResponse; expiresAtMs: number }>();
  return {
    async get(key) {
      const entry = entries.get(key);
      if (!entry) return undefined;
      entries.delete(key);
      if (entry.expiresAtMs <= Date.now()) return undefined;
      entries.set(key, entry);
      return entry.value;
    },
    async put(key, value) {
      const existing = entries.get(key);
      if (existing && existing.expiresAtMs > Date.now()) return;
      entries.delete(key);
      entries.set(key, { value, expiresAtMs: Date.now() + ttlSeconds * 1000 });
      while (entries.size > entriesMax) entries.delete(entries.keys().next().value!);
    },
  };
}

/** Shared by every instance; skipped while Redis is down. Errors surface to the caller, who skips the cache. */
export function redisResponseCache(redis: RedisHandle, ttlSeconds = IDEMPOTENCY_CACHE_TTL_SECONDS): ResponseCache {
  return {
    async get(key) {
      if (!redis.isUp()) return undefined;
      const text = await redis.client.get(key);
      return text ? parseCached(text) : undefined;
    },
    async put(key, value) {
      if (!redis.isUp()) return;
      await redis.client.set(key, JSON.stringify(value), 'EX', ttlSeconds, 'NX');
    },
  };
}

function parseCached(text: string): CachedResponse | undefined {
  try {
    const value = JSON.parse(text) as Partial<CachedResponse>;
    const valid = typeof value.requestHash === 'string' && typeof value.status === 'number' && value.status >= 200 && value.status < 300 && typeof value.payload === 'string' && typeof value.contentType === 'string' && (value.canonicalRequestHash === undefined || typeof value.canonicalRequestHash === 'string');
    return valid ? (value as CachedResponse) : undefined;
  } catch {
    return undefined;
  }
}

export interface IdempotencyCacheOptions {
  cache: ResponseCache;
  /** The command's scope, exactly as the command handler computes it; undefined when the request carries no key. */
  scopeOf(request: FastifyRequest): IdempotencyScope | undefined;
  logger: Logger;
}

const pendingKey = Symbol('idempotencyCacheKey');

/**
 * A fast path in front of the event store's durable idempotency, for POST /v1 routes: a repeat with
 * the same principal, key and request answers from the cache without touching the store, and the
 * key with another request is refused with a 422. Losing the cache (Redis down, flushed, evicted)
 * costs a repeat a trip to the store, which recognises it on the same resource itself, so it can
 * never cause a second effect there.
 */
export const idempotencyCachePlugin = fp(
  async (app: FastifyInstance, options: IdempotencyCacheOptions) => {
    const { cache, logger } = options;
    app.decorateRequest(pendingKey, undefined);

    app.addHook('preHandler', async (request, reply) => {
      if (request.method !== 'POST' || !request.routeOptions.url?.startsWith('/v1') || !request.principal) return;
      // No key (the handler refuses the request, or the route has its own key, as transfers do).
      const scope = options.scopeOf(request);
      if (!scope) return;
      const key = idempotencyCacheKey(scope.idempotencyKey);
      let cached: CachedResponse | undefined;
      try {
        cached = await cache.get(key);
      } catch (error) {
        logger.warn({ err: (error as Error).message }, 'idempotency cache lookup failed; skipping it');
        return;
      }
      if (cached && isSameRequest(cached, scope)) {
        void reply.code(cached.status).header('content-type', cached.contentType).header(REPLAY_HEADER, 'true');
        if (cached.location) void reply.header('location', cached.location);
        return reply.send(cached.payload);
      }
      // The key answered another request: refused here, because the store checks keys per stream
      // and would take the same key on another resource (a deposit to a second account) as new.
      // So that case is refused only while the cache remembers the key (see docs/architecture.md).
      if (cached) throw new HttpProblem(422, 'idempotency_key_reused', 'this idempotency key was already used with a different request');
      (request as unknown as Record<symbol, unknown>)[pendingKey] = { key, requestHash: scope.requestHash, canonicalRequestHash: scope.canonicalRequestHash };
    });

    app.addHook('onSend', async (request, reply, payload) => {
      const pending = (request as unknown as Record<symbol, { key: string; requestHash: string; canonicalRequestHash?: string } | undefined>)[pendingKey];
      if (!pending || reply.statusCode < 200 || reply.statusCode >= 300 || typeof payload !== 'string' || payload.length > PAYLOAD_BYTES_MAX) return payload;
      const location = reply.getHeader('location');
      const value: CachedResponse = {
        requestHash: pending.requestHash,
        ...(pending.canonicalRequestHash === undefined ? {} : { canonicalRequestHash: pending.canonicalRequestHash }),
        status: reply.statusCode,
        payload,
        contentType: String(reply.getHeader('content-type') ?? 'application/json; charset=utf-8'),
        ...(typeof location === 'string' ? { location } : {}),
      };
      // The answer never waits on the cache.
      cache.put(pending.key, value).catch((error: unknown) => logger.warn({ err: (error as Error).message }, 'idempotency cache store failed; skipping it'));
      return payload;
    });
  },
  { name: 'idempotency-cache' },
);

import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit, { type FastifyRateLimitStore, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { Logger } from 'pino';
import { actorOf } from '../auth/principal.js';
import { HttpProblem } from '../http/problem.js';
import type { RedisHandle } from './redis.js';

export const RATE_LIMIT_WINDOW_MS = 60_000;
/** Keys the in-process stand-in remembers; the least recently used are dropped past it. */
const LOCAL_KEYS_MAX = 10_000;
const REDIS_KEY_PREFIX = 'ledger:rl:';

interface Count {
  current: number;
  ttl: number;
}

/** A fixed window per key, in process: the stand-in when Redis is absent or down. */
export class LocalWindowCounter {
  private readonly windows = new Map<string, { count: number; startMs: number }>();

  constructor(private readonly keysMax = LOCAL_KEYS_MAX) {}

  increment(key: string, windowMs: number, nowMs = Date.now()): Count {
    let entry = this.windows.get(key);
    if (!entry || entry.startMs + windowMs <= nowMs) entry = { count: 0, startMs: nowMs };
    entry.count += 1;
    // Re-inserting keeps the map in least-recently-used order.
    this.windows.delete(key);
    this.windows.set(key, entry);
    while (this.windows.size > this.keysMax) this.windows.delete(this.windows.keys().next().value!);
    return { current: entry.count, ttl: Math.max(0, entry.startMs + windowMs - nowMs) };
  }
}

/** A fixed window shared by every instance through Redis: one atomic MULTI per request. */
async function incrementInRedis(redis: RedisHandle, key: string, windowMs: number): Promise<Count> {
  const results = await redis.client.multi().set(key, '0', 'PX', windowMs, 'NX').incr(key).pttl(key).exec();
  if (!results) throw new Error('redis transaction was discarded');
  for (const [error] of results) if (error) throw error;
  const current = Number(results[1]![1]);
  const ttl = Number(results[2]![1]);
  return { current, ttl: ttl > 0 ? ttl : windowMs };
}

/**
 * The rate-limit plugin's store: Redis when it is up, the in-process window otherwise. Losing Redis
 * never stops the API; each instance then limits on its own until Redis is back.
 */
export function fallbackStore(redis: RedisHandle | undefined, logger: Logger, windowMs: number): FastifyRateLimitStoreCtor {
  const local = new LocalWindowCounter();
  let fallingBack = false;
  const useLocal = (key: string, reason: string): Count => {
    if (!fallingBack) {
      fallingBack = true;
      logger.warn({ reason }, 'rate limiting falls back to in-process counters');
    }
    return local.increment(key, windowMs);
  };
  class FallbackStore implements FastifyRateLimitStore {
    incr(key: string, callback: (error: Error | null, result?: Count) => void): void {
      if (!redis || !redis.isUp()) {
        callback(null, redis ? useLocal(key, 'redis is down') : local.increment(key, windowMs));
        return;
      }
      incrementInRedis(redis, REDIS_KEY_PREFIX + key, windowMs).then(
        (count) => {
          if (fallingBack) {
            fallingBack = false;
            logger.warn('rate limiting uses shared Redis counters again');
          }
          callback(null, count);
        },
        (error: Error) => callback(null, useLocal(key, error.message)),
      );
    }
    child(): FastifyRateLimitStore {
      return this;
    }
  }
  return FallbackStore;
}

/** Authenticated callers are limited per principal, anyone else per address. */
export function rateLimitKey(request: FastifyRequest): string {
  return request.principal ? `p:${actorOf(request.principal)}` : `ip:${request.ip}`;
}

export interface RateLimitOptions {
  perMinute: number;
  redis: RedisHandle | undefined;
  logger: Logger;
}

/**
 * Limits every /v1 route. It runs in preValidation: after authentication (onRequest), so the
 * principal is known, and before body validation, so malformed requests count too. /health and
 * /docs are never limited. A 429 is a problem+json answer with Retry-After and x-ratelimit-*.
 */
export const rateLimitPlugin = fp(
  async (app: FastifyInstance, options: RateLimitOptions) => {
    await app.register(rateLimit, {
      global: true,
      hook: 'preValidation',
      max: options.perMinute,
      timeWindow: RATE_LIMIT_WINDOW_MS,
      store: fallbackStore(options.redis, options.logger, RATE_LIMIT_WINDOW_MS),
      skipOnError: true,
      keyGenerator: rateLimitKey,
      allowList: (request) => !(request.routeOptions.url ?? request.url).startsWith('/v1'),
      errorResponseBuilder: (_request, context) => {
        const retryAfterSeconds = Math.max(1, Math.ceil(context.ttl / 1000));
        return new HttpProblem(429, 'rate_limited', `too many requests; retry in ${retryAfterSeconds} s`, {
          'retry-after': String(retryAfterSeconds),
          'x-ratelimit-limit': String(context.max),
          'x-ratelimit-remaining': '0',
          'x-ratelimit-reset': String(retryAfterSeconds),
        });
      },
    });
  },
  { name: 'rate-limit' },
);

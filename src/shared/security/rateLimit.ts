import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit, { type FastifyRateLimitStore, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { Logger } from 'pino';
import { actorOf } from '../auth/principal.js';
import { HttpProblem } from '../http/problem.js';
import type { RedisHandle } from './redis.js';
import { isApiRequest } from '../http/requestPath.js';

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

const SYNC_INTERVAL_MS = 50;
/** Below this share of the limit a request is counted locally and synced in the background. */
const LOCAL_SHARE = 0.5;

interface SharedEntry {
  window: number;
  /** The global count as Redis last reported it. */
  knownGlobal: number;
  /** Increments of this instance not yet sent to Redis. */
  pending: number;
}

/**
 * A fixed window shared by every instance through Redis, without a Redis round trip per request:
 * far from the limit, requests are counted locally and the deltas are sent every 50 ms in one
 * pipeline; in the last half of the limit every request increments Redis and waits, so the limit
 * itself is exact across instances. Windows are aligned to the clock, so all instances agree.
 */
class SharedWindowCounter {
  private readonly entries = new Map<string, SharedEntry>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly redis: RedisHandle,
    private readonly windowMs: number,
    private readonly limit: number,
    private readonly onError: (error: Error) => void,
  ) {
    this.timer = setInterval(() => void this.flush(), SYNC_INTERVAL_MS);
    this.timer.unref();
  }

  async increment(key: string): Promise<Count> {
    const nowMs = Date.now();
    const window = Math.floor(nowMs / this.windowMs);
    const ttl = (window + 1) * this.windowMs - nowMs;
    let entry = this.entries.get(key);
    if (!entry || entry.window !== window) entry = { window, knownGlobal: 0, pending: 0 };
    this.entries.delete(key);
    this.entries.set(key, entry);
    while (this.entries.size > LOCAL_KEYS_MAX) this.entries.delete(this.entries.keys().next().value!);
    if (entry.knownGlobal + entry.pending + 1 < this.limit * LOCAL_SHARE) {
      entry.pending += 1;
      return { current: entry.knownGlobal + entry.pending, ttl };
    }
    const delta = entry.pending + 1;
    entry.pending = 0;
    try {
      const total = await this.incrementBy(key, window, delta, ttl);
      entry.knownGlobal = Math.max(entry.knownGlobal, total);
      return { current: total, ttl };
    } catch (error) {
      entry.pending += delta;
      throw error;
    }
  }

  private async incrementBy(key: string, window: number, delta: number, ttlMs: number): Promise<number> {
    const redisKey = `${REDIS_KEY_PREFIX}${key}:${window}`;
    const results = await this.redis.client.multi().incrby(redisKey, delta).pexpire(redisKey, ttlMs + 1_000).exec();
    if (!results) throw new Error('redis transaction was discarded');
    for (const [error] of results) if (error) throw error;
    return Number(results[0]![1]);
  }

  private async flush(): Promise<void> {
    if (!this.redis.isUp()) return;
    const nowMs = Date.now();
    const sends: { entry: SharedEntry; key: string; sent: number }[] = [];
    for (const [key, entry] of this.entries) {
      if (entry.pending === 0 || entry.window !== Math.floor(nowMs / this.windowMs)) continue;
      sends.push({ entry, key, sent: entry.pending });
      entry.pending = 0;
    }
    if (sends.length === 0) return;
    const pipeline = this.redis.client.pipeline();
    for (const { key, entry, sent } of sends) {
      const redisKey = `${REDIS_KEY_PREFIX}${key}:${entry.window}`;
      pipeline.incrby(redisKey, sent).pexpire(redisKey, (entry.window + 1) * this.windowMs - nowMs + 1_000);
    }
    try {
      const results = (await pipeline.exec()) ?? [];
      sends.forEach(({ entry, sent }, index) => {
        const [error, total] = results[index * 2] ?? [new Error('no reply'), null];
        if (error) entry.pending += sent;
        else entry.knownGlobal = Math.max(entry.knownGlobal, Number(total));
      });
    } catch (error) {
      for (const { entry, sent } of sends) entry.pending += sent;
      this.onError(error as Error);
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/**
 * The rate-limit plugin's store: shared through Redis when it is up, the in-process window
 * otherwise. Losing Redis never stops the API; each instance then limits on its own until Redis is
 * back.
 */
export function fallbackStore(redis: RedisHandle | undefined, logger: Logger, windowMs: number, limit: number): { store: FastifyRateLimitStoreCtor; close(): void } {
  const local = new LocalWindowCounter();
  let fallingBack = false;
  const useLocal = (key: string, reason: string): Count => {
    if (!fallingBack) {
      fallingBack = true;
      logger.warn({ reason }, 'rate limiting falls back to in-process counters');
    }
    return local.increment(key, windowMs);
  };
  const shared = redis ? new SharedWindowCounter(redis, windowMs, limit, (error) => logger.warn({ err: error.message }, 'rate limit sync to redis failed')) : undefined;
  class FallbackStore implements FastifyRateLimitStore {
    incr(key: string, callback: (error: Error | null, result?: Count) => void): void {
      if (!redis || !shared || !redis.isUp()) {
        callback(null, redis ? useLocal(key, 'redis is down') : local.increment(key, windowMs));
        return;
      }
      shared.increment(key).then(
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
  return { store: FallbackStore, close: () => shared?.close() };
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
 * Limits every /v1 route. It runs in preParsing: after authentication (onRequest), so the
 * principal is known, and before the body is parsed, so malformed bodies count too (in
 * preValidation a body that failed to parse never reached the limit, and cost its parse each
 * time). /health and /docs are never limited. A 429 is a problem+json answer with Retry-After and
 * x-ratelimit-*.
 */
export const rateLimitPlugin = fp(
  async (app: FastifyInstance, options: RateLimitOptions) => {
    const { store, close } = fallbackStore(options.redis, options.logger, RATE_LIMIT_WINDOW_MS, options.perMinute);
    app.addHook('onClose', async () => close());
    await app.register(rateLimit, {
      global: true,
      hook: 'preParsing',
      max: options.perMinute,
      timeWindow: RATE_LIMIT_WINDOW_MS,
      store,
      skipOnError: true,
      keyGenerator: rateLimitKey,
      allowList: (request) => !isApiRequest(request),
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

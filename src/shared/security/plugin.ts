import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Logger } from 'pino';
import { decodeJwt } from 'jose';
import type { TokenVerifier } from '../auth/keys.js';
import type { PrincipalRole } from '../auth/principal.js';
import type { Config } from '../../config.js';
import { hardeningPlugin } from './hardening.js';
import { idempotencyCachePlugin, localResponseCache, redisResponseCache, type IdempotencyScope } from './idempotencyCache.js';
import { rateLimitPlugin } from './rateLimit.js';
import { connectRedis, type RedisStatus } from './redis.js';

export interface SecurityOptions {
  config: Config;
  logger: Logger;
  /** False only for the overhead benchmark. */
  rateLimit?: boolean;
  /** The command's principal-scoped idempotency key and request fingerprint. */
  idempotencyScope(request: FastifyRequest): IdempotencyScope | undefined;
}

export interface SecurityState {
  /** For readiness: Redis is optional, so `down` is reported but never fails readiness. */
  redis(): RedisStatus | { state: 'disabled' };
}

/**
 * Everything issue 7 puts in front of the routes. Register it before the auth plugin and before any
 * route: CORS must answer preflights before authentication, and the rate limiter attaches itself to
 * routes as they are added.
 */
export const securityPlugin = fp(
  async (app: FastifyInstance, options: SecurityOptions) => {
    const { config, logger } = options;
    const redis = await connectRedis(config.REDIS_URL, logger);
    app.addHook('onClose', async () => redis?.close());
    app.decorate('security', { redis: () => redis?.status() ?? { state: 'disabled' as const } } satisfies SecurityState);
    await app.register(hardeningPlugin, { corsOrigins: config.CORS_ORIGINS });
    if (options.rateLimit !== false) await app.register(rateLimitPlugin, { perMinute: config.RATE_LIMIT_PER_MINUTE, redis, logger });
    await app.register(idempotencyCachePlugin, { cache: redis ? redisResponseCache(redis) : localResponseCache(), scopeOf: options.idempotencyScope, logger });
  },
  { name: 'security' },
);

declare module 'fastify' {
  interface FastifyInstance {
    security: SecurityState;
  }
}

/**
 * For the security-overhead benchmark only (LedgerOptions.authAndRateLimitDisabledForBenchmark; never
 * reachable from the environment): trusts the token's claims without checking its signature.
 */
export const unverifiedTokenReaderForBenchmark: TokenVerifier = {
  async verify(token) {
    const claims = decodeJwt(token);
    return { subject: String(claims.sub), role: claims.role as PrincipalRole };
  },
};

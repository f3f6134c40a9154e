import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpProblem } from '../http/problem.js';
import { TokenError, type TokenVerifier } from './keys.js';
import { LocalWindowCounter } from '../security/rateLimit.js';
import type { AccessRule, Principal } from './principal.js';
import { isApiRequest } from '../http/requestPath.js';

export interface RouteEntry {
  method: string;
  url: string;
  access: AccessRule;
}

/** Failed authentications one address may make per minute before it is refused outright. */
const FAILED_AUTHENTICATIONS_PER_MINUTE = 60;
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;
const MAX_TOKEN_LENGTH = 8_192;

/**
 * Authentication and role checks for every /v1 route. A /v1 route without an access rule cannot be
 * registered, and every rule lands in `app.routeTable`, from which the authorisation test matrix is
 * generated.
 */
export const authPlugin = fp(
  async (app: FastifyInstance, options: { verifier: TokenVerifier }) => {
    const table: RouteEntry[] = [];
    app.decorate('routeTable', table);
    app.decorateRequest('principal', undefined);
    app.addHook('onRoute', (route) => {
      if (!route.url.startsWith('/v1')) return;
      const access = (route.config as { access?: AccessRule } | undefined)?.access;
      if (!access) throw new Error(`route ${String(route.method)} ${route.url} has no access rule`);
      for (const method of [route.method].flat()) if (method !== 'HEAD') table.push({ method, url: route.url, access });
    });
    const failures = new LocalWindowCounter();
    // Token guessing is limited per address here, because a request without a valid token never
    // reaches the rate limiter (which keys on the principal).
    const refuse = (request: { ip: string }, problem: HttpProblem): HttpProblem => {
      const count = failures.increment(`auth:${request.ip}`, 60_000);
      if (count.current <= FAILED_AUTHENTICATIONS_PER_MINUTE) return problem;
      const retryAfterSeconds = String(Math.max(1, Math.ceil(count.ttl / 1000)));
      return new HttpProblem(429, 'rate_limited', 'too many failed authentications from this address', { 'retry-after': retryAfterSeconds });
    };
    app.addHook('onRequest', async (request) => {
      if (!isApiRequest(request)) return;
      const header = request.headers.authorization;
      if (!header) throw refuse(request, new HttpProblem(401, 'unauthenticated', 'a bearer token is required', { 'www-authenticate': 'Bearer' }));
      const match = header.length <= MAX_TOKEN_LENGTH ? BEARER.exec(header) : null;
      if (!match) throw refuse(request, new HttpProblem(401, 'invalid_token', 'the Authorization header must be "Bearer <jwt>"', { 'www-authenticate': 'Bearer error="invalid_token"' }));
      try {
        request.principal = await options.verifier.verify(match[1]!);
      } catch (error) {
        // An expired token proves its signer: not counted as a guess, so clients behind one address
        // that refresh on this 401 are never told 429 for it.
        if (error instanceof TokenError && error.expired) throw new HttpProblem(401, 'token_expired', 'the bearer token has expired', { 'www-authenticate': 'Bearer error="invalid_token", error_description="the token has expired"' });
        if (error instanceof TokenError) throw refuse(request, new HttpProblem(401, 'invalid_token', 'the bearer token is not valid', { 'www-authenticate': 'Bearer error="invalid_token"' }));
        throw error;
      }
    });
    app.addHook('preValidation', async (request) => {
      const access = (request.routeOptions.config as { access?: AccessRule }).access;
      if (!access || !isApiRequest(request)) return;
      const principal = request.principal!;
      if (!access.roles.includes(principal.role)) throw new HttpProblem(403, 'forbidden', `the ${principal.role} role may not do this`);
    });
  },
  { name: 'auth' },
);

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new HttpProblem(401, 'unauthenticated', 'a bearer token is required');
  return request.principal;
}

/** A customer may only touch what they own; anything else looks like it does not exist. */
/** `notFound` is called only to refuse: building an error captures a stack, too dear for every request. */
export function assertOwner(request: FastifyRequest, ownerCustomerId: string | undefined, notFound: () => HttpProblem): void {
  const principal = principalOf(request);
  if (principal.role !== 'customer') return;
  if (ownerCustomerId !== principal.subject) throw notFound();
}

declare module 'fastify' {
  interface FastifyInstance {
    routeTable: RouteEntry[];
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
  interface FastifyContextConfig {
    access?: AccessRule;
  }
}

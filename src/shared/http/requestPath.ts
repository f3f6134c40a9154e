import type { FastifyRequest } from 'fastify';

/**
 * The path a request is for: the route it matched, else the path of its target. Never the raw
 * target by itself: the router also accepts the absolute form (`GET http://host/v1/... HTTP/1.1`),
 * whose target does not start with the path, and a check on that prefix let such a request past
 * authentication. A target that cannot be parsed counts as the API, so the checks stay on.
 */
export function requestPath(request: FastifyRequest): string {
  const route = request.routeOptions.url;
  if (route !== undefined) return route;
  const target = request.url;
  if (target.startsWith('/')) return target;
  try {
    return new URL(target).pathname;
  } catch {
    return API_PREFIX;
  }
}

export const API_PREFIX = '/v1';

/** Whether the request is for the versioned API, which needs a token and is rate limited. */
export function isApiRequest(request: FastifyRequest): boolean {
  return requestPath(request).startsWith(API_PREFIX);
}

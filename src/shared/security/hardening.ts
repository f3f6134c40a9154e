import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import helmet from '@fastify/helmet';
import cors from '@fastify/cors';
import { HttpProblem, problem } from '../http/problem.js';
import { isApiRequest, requestPath } from '../http/requestPath.js';

/** Node answers 431 past this many bytes of request line and headers. */
export const HEADER_BYTES_MAX = 16 * 1024;
/** Deepest body nesting the text check walks; the body limit bounds the rest. */
const BODY_DEPTH_MAX = 32;

/** An API answers JSON only: nothing may load, frame or run from it. */
const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/** Swagger UI is a page: its own scripts, styles and images, nothing from elsewhere. */
const DOCS_CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline' https:; img-src 'self' data: https:; font-src 'self' https: data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

export function parseOrigins(text: string): string[] {
  return text
    .split(',')
    .map((origin) => origin.trim().replace(/\/+$/, ''))
    .filter((origin) => origin.length > 0);
}

/**
 * Text that PostgreSQL cannot store (NUL) or that is not Unicode (a lone surrogate) is refused at the
 * edge with a 400, wherever it sits in a body or query string, instead of failing deep in a write.
 */
export function findUnsafeText(value: unknown, path = '', depth = 0): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') || !value.isWellFormed() ? path || '/' : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  if (depth > BODY_DEPTH_MAX) return path;
  for (const [key, item] of Object.entries(value)) {
    const itemPath = `${path}/${key}`;
    if (key.includes('\u0000') || !key.isWellFormed()) return itemPath;
    const found = findUnsafeText(item, itemPath, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** Oversized headers and unparsable requests get a problem+json answer before the socket closes. */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const code = status === 431 ? 'headers_too_large' : status === 408 ? 'request_timeout' : 'bad_request';
  const body = JSON.stringify(problem(status, code, status === 431 ? `request headers exceed ${HEADER_BYTES_MAX} bytes` : 'the request could not be parsed'));
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nConnection: close\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }
  socket.destroy(error);
}

/**
 * Errors Fastify raises before routing (a malformed percent-encoding, an over-long path parameter)
 * skip the error handler; they get a problem answer too, without echoing the path.
 */
export function frameworkErrorHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const known: Record<string, [number, string, string]> = {
    FST_ERR_BAD_URL: [400, 'bad_url', 'the URL is not valid percent-encoded UTF-8'],
    FST_ERR_MAX_PARAM_LENGTH: [414, 'path_parameter_too_long', 'a path parameter is too long'],
  };
  const [status, code, detail] = known[error.code] ?? [400, 'bad_request', 'the request could not be routed'];
  void reply.code(status).type('application/problem+json').send(problem(status, code, detail));
}

/** Options for Fastify's constructor: bounded headers, problem answers for client and routing errors. */
export const hardenedServerOptions = {
  http: { maxHeaderSize: HEADER_BYTES_MAX },
  clientErrorHandler: clientErrorHandler as (error: Error, socket: Socket) => void,
  frameworkErrors: frameworkErrorHandler,
};

/**
 * Security headers (helmet, with a strict API CSP relaxed only for /docs), CORS from an allow-list
 * (empty: no cross-origin access), and refusal of text the ledger cannot store.
 */
export const hardeningPlugin = fp(
  async (app: FastifyInstance, options: { corsOrigins: string }) => {
    await app.register(helmet, { global: true, contentSecurityPolicy: false, crossOriginEmbedderPolicy: false });
    app.addHook('onRequest', async (request, reply) => {
      void reply.header('content-security-policy', requestPath(request).startsWith('/docs') ? DOCS_CSP : API_CSP);
    });
    const origins = parseOrigins(options.corsOrigins);
    await app.register(cors, {
      origin: origins.length > 0 ? origins : false,
      methods: ['GET', 'POST'],
      allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'x-correlation-id', 'x-min-position'],
      exposedHeaders: ['location', 'retry-after', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'idempotent-replayed'],
      maxAge: 600,
    });
    app.addHook('preValidation', async (request) => {
      if (!isApiRequest(request)) return;
      const where = findUnsafeText(request.query, 'query') ?? findUnsafeText(request.params, 'params') ?? findUnsafeText(request.body, 'body');
      if (where) throw new HttpProblem(400, 'invalid_text', `${where} contains a NUL character or invalid Unicode`);
      const correlationId = request.headers['x-correlation-id'];
      if (correlationId !== undefined && (typeof correlationId !== 'string' || !/^[\x21-\x7E]{1,100}$/.test(correlationId))) {
        throw new HttpProblem(400, 'invalid_correlation_id', 'X-Correlation-Id must be 1..100 printable ASCII characters');
      }
    });
  },
  { name: 'hardening' },
);

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Type } from '@sinclair/typebox';
import { DomainError } from '../../domain/errors.js';
import { ConcurrencyError, IdempotencyConflictError, InvalidAppendError } from '../../eventstore/port.js';

/** RFC 9457 problem details. `type` is a stable URI per kind of problem. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code?: string;
  instance?: string;
  errors?: { path: string; message: string }[];
}

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.Optional(Type.String()),
    code: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
  },
  { $id: 'Problem', title: 'Problem details (RFC 9457)' },
);

const TYPE_BASE = 'https://ledger.example/problems/';

/** An error raised on purpose by HTTP code, with its status and a stable code. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function problem(status: number, code: string, detail?: string, extra: Partial<Problem> = {}): Problem {
  return { type: `${TYPE_BASE}${code}`, title: TITLES[status] ?? 'Error', status, code, ...(detail ? { detail } : {}), ...extra };
}

/** Maps every error to a problem in one place. 5xx answers never carry internals. */
export function toProblem(error: unknown): { problem: Problem; headers: Record<string, string> } {
  if (error instanceof HttpProblem) return { problem: problem(error.status, error.code, error.message), headers: error.headers };
  if (error instanceof DomainError) return { problem: problem(error.status, error.code, error.message), headers: {} };
  if (error instanceof ConcurrencyError) return { problem: problem(409, 'concurrency_conflict', 'the resource changed concurrently; retry the request'), headers: {} };
  if (error instanceof IdempotencyConflictError) return { problem: problem(422, 'idempotency_key_reused', 'this idempotency key was used with a different request'), headers: {} };
  if (error instanceof InvalidAppendError) return { problem: problem(400, 'invalid_event', error.message), headers: {} };
  const fastifyError = error as FastifyError & { validation?: { instancePath: string; message?: string; params?: Record<string, unknown> }[]; validationContext?: string };
  if (fastifyError.validation) {
    const errors = fastifyError.validation.map((item) => ({
      path: `${fastifyError.validationContext ?? 'body'}${item.instancePath || ''}${item.params?.additionalProperty ? `/${String(item.params.additionalProperty)}` : ''}`,
      message: item.message ?? 'is invalid',
    }));
    return { problem: problem(400, 'validation_failed', `${errors[0]?.path ?? 'request'} ${errors[0]?.message ?? 'is invalid'}`, { errors }), headers: {} };
  }
  const statusCode = fastifyError.statusCode;
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    const code = FASTIFY_CODES[fastifyError.code ?? ''] ?? (fastifyError.code ?? 'bad_request').replace(/^FST_(ERR_)?/, '').toLowerCase();
    return { problem: problem(statusCode, code, safeClientMessage(fastifyError)), headers: {} };
  }
  return { problem: problem(500, 'internal_error', 'an unexpected error occurred; it has been logged'), headers: {} };
}

/** Fastify's own refusals, under codes that name the problem rather than Fastify's internals. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'empty_json_body',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
};

function safeClientMessage(error: FastifyError): string {
  // Fastify's own 4xx messages describe the request, not our internals; JSON parser messages can echo input, so shorten them.
  if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) return 'the body is not valid JSON';
  return error.message.slice(0, 300);
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, error: unknown): FastifyReply {
  const { problem: body, headers } = toProblem(error);
  if (body.status >= 500) request.log.error({ err: error }, 'request failed');
  else request.log.info({ code: body.code, status: body.status }, 'request refused');
  for (const [name, value] of Object.entries(headers)) void reply.header(name, value);
  return reply.status(body.status).type('application/problem+json').send({ ...body, instance: request.url.split('?')[0] });
}

export const problemDetailsPlugin = fp(
  async (app: FastifyInstance) => {
    app.addSchema(ProblemSchema);
    app.setErrorHandler((error, request, reply) => sendProblem(reply, request, error));
    app.setNotFoundHandler((request, reply) => sendProblem(reply, request, new HttpProblem(404, 'route_not_found', `no route ${request.method} ${request.url.split('?')[0]}`)));
  },
  { name: 'problem-details' },
);

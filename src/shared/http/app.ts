import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { Ajv, type Options as AjvOptions } from 'ajv';
import addFormats from 'ajv-formats';
import { Type } from '@sinclair/typebox';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Logger } from 'pino';
import { registerJsonBodyParser } from './jsonBody.js';
import { problemDetailsPlugin } from './problem.js';

/**
 * Ajv for request bodies neither coerces types nor strips unknown fields: a JSON number is not an
 * amount string, and an unknown field is an error (see shared/PITFALLS.md). Query strings and path
 * parameters arrive as text, so only they are coerced.
 */
const STRICT_BODY: AjvOptions = { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false, strict: false };
const TEXT_PARTS: AjvOptions = { ...STRICT_BODY, coerceTypes: true };

function ajvWith(options: AjvOptions): Ajv {
  const ajv = new Ajv(options);
  addFormats.default(ajv);
  return ajv;
}

/**
 * The body of a POST that takes no fields. Without a body schema a route ignored any body (a
 * release sent an amount was a full release); with it, a field is refused by name, and no body at
 * all still passes, as `{}` (see the preValidation hook below).
 */
/** The query string of a route that reads none. */
const NoQuery = Type.Object({}, { additionalProperties: false });

export const NoBody = Type.Object({}, { additionalProperties: false, description: 'no fields: send no body, or {}' });

export interface HttpAppOptions {
  logger: Logger;
  bodyLimitBytes: number;
  requestTimeoutMs: number;
  title: string;
  /** Extra options for Fastify's constructor (bounded headers, a client error handler). */
  serverOptions?: Partial<FastifyServerOptions>;
}

export async function createHttpApp(options: HttpAppOptions): Promise<FastifyInstance> {
  const serverOptions: FastifyServerOptions = {
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes,
    requestTimeout: options.requestTimeoutMs,
    connectionTimeout: options.requestTimeoutMs,
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    genReqId: () => crypto.randomUUID(),
    requestIdHeader: false,
    ajv: { customOptions: STRICT_BODY },
    ...options.serverOptions,
  };
  const app = Fastify(serverOptions) as unknown as FastifyInstance;
  const bodyAjv = ajvWith(STRICT_BODY);
  const textAjv = ajvWith(TEXT_PARTS);
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema));
  registerJsonBodyParser(app);

  // A POST without a body is validated as `{}`: routes whose fields are all optional accept it,
  // and routes with required fields name the missing ones.
  app.addHook('preValidation', async (request) => {
    if (request.method === 'POST' && request.body === undefined) request.body = {};
  });
  app.addHook('onRoute', (route) => {
    if ([route.method].flat().includes('POST') && !route.schema?.body) throw new Error(`route POST ${route.url} declares no body; one that takes no fields uses NoBody`);
    // A parameter nobody reads is refused by name, not ignored (`…/deposits?amount=5` moved the body's amount).
    if (route.url.startsWith('/v1/') && !route.schema?.querystring) route.schema = { ...route.schema, querystring: NoQuery };
  });
  await app.register(problemDetailsPlugin);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: options.title, version: '0.1.0', description: 'Event-sourced double-entry ledger. Amounts are decimal strings in major units.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  return app;
}

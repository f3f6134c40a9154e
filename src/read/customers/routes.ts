import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { accountsOfCustomer } from '../../projections/accounts/query.js';
import { findCustomer, type CustomerRow } from '../../projections/customers/query.js';
import { assertOwner } from '../../shared/auth/plugin.js';
import { HttpProblem } from '../../shared/http/problem.js';
import { AccountView, accountView } from '../accounts/routes.js';
import { awaitPosition, awaitPositions, MinPositionQuery } from '../http.js';
import type { ReadContext } from '../plugin.js';

const CustomerView = Type.Object({
  id: Type.String(),
  email: Type.String(),
  firstName: Type.String(),
  lastName: Type.String(),
  status: Type.String(),
  registeredAt: Type.String(),
  updatedAt: Type.String(),
  position: Type.String(),
});
const Params = Type.Object({ id: Type.String({ format: 'uuid', maxLength: 36 }) }, { additionalProperties: false });
const Problems = { 400: Type.Ref('Problem'), 401: Type.Ref('Problem'), 403: Type.Ref('Problem'), 404: Type.Ref('Problem'), 503: Type.Ref('Problem') };
const access = { roles: ['customer', 'teller', 'auditor', 'admin'], ownership: 'customer-param' } as const;

const notFound = () => new HttpProblem(404, 'customer_not_found', 'no such customer');

async function visibleCustomer(context: ReadContext, request: FastifyRequest, id: string): Promise<CustomerRow> {
  assertOwner(request, id, notFound);
  const customer = await findCustomer(context.db, id);
  if (!customer) throw notFound();
  return customer;
}

export async function customerReadRoutes(app: FastifyInstance, context: ReadContext): Promise<void> {
  app.get(
    '/v1/customers/:id',
    {
      config: { access },
      schema: { tags: ['customers'], summary: 'A customer and their status', params: Params, querystring: Type.Object({ ...MinPositionQuery }, { additionalProperties: false }), response: { 200: CustomerView, ...Problems } },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      await awaitPosition(request, context.progress, 'customers', context.readWaitTimeoutMs);
      const customer = await visibleCustomer(context, request, id);
      return {
        id: customer.customer_id,
        email: customer.email,
        firstName: customer.first_name,
        lastName: customer.last_name,
        status: customer.status,
        registeredAt: customer.registered_at.toISOString(),
        updatedAt: customer.updated_at.toISOString(),
        position: customer.last_position.toString(),
      };
    },
  );

  app.get(
    '/v1/customers/:id/accounts',
    {
      config: { access },
      schema: {
        tags: ['customers'],
        summary: "A customer's accounts",
        params: Params,
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 200, default: 200 }), cursor: Type.Optional(Type.String({ maxLength: 512 })), ...MinPositionQuery },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(AccountView), nextCursor: Type.Union([Type.String(), Type.Null()]) }), ...Problems },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const query = request.query as { limit: number; cursor?: string };
      let after: { openedAt: Date; accountId: string } | undefined;
      if (query.cursor !== undefined) {
        const cursor = context.cursors.decode(query.cursor);
        const openedAt = typeof cursor.o === 'string' ? new Date(cursor.o) : undefined;
        if (cursor.c !== id || typeof cursor.i !== 'string' || openedAt === undefined || Number.isNaN(openedAt.getTime())) throw new HttpProblem(400, 'invalid_cursor', 'the cursor does not belong to this listing');
        after = { openedAt, accountId: cursor.i };
      }
      // The listing reads two read models: both must have passed the position.
      await awaitPositions(request, context.progress, ['accounts', 'customers'], context.readWaitTimeoutMs);
      await visibleCustomer(context, request, id);
      const rows = await accountsOfCustomer(context.db, id, query.limit + 1, after);
      const page = rows.slice(0, query.limit);
      const last = page.at(-1);
      const nextCursor = rows.length > query.limit && last ? context.cursors.encode({ c: id, o: last.opened_at.toISOString(), i: last.account_id }) : null;
      return { items: page.map(accountView), nextCursor };
    },
  );
}

import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { normalizeEmail, validateEmail, validateName, type CustomerEvent } from '../../domain/customer.js';
import { NoBody } from '../../shared/http/app.js';
import { HttpProblem } from '../../shared/http/problem.js';
import { assertOwner } from '../../shared/auth/plugin.js';
import { isSameRequest } from '../../shared/requestFingerprint.js';
import { deterministicId } from '../commandHandler.js';
import { commandContext, IdempotencyHeaders, markReplay, nowIso, Position, problemResponses, Uuid } from '../http.js';
import { customerStream, emailReservationStream } from '../streams.js';
import type { WriteSide } from '../writeSide.js';

const RegisterBody = Type.Object(
  {
    email: Type.String({ minLength: 3, maxLength: 254 }),
    firstName: Type.String({ minLength: 1, maxLength: 100 }),
    lastName: Type.String({ minLength: 1, maxLength: 100 }),
  },
  { additionalProperties: false },
);
const CustomerCreated = Type.Object({
  id: Uuid,
  email: Type.String(),
  firstName: Type.String(),
  lastName: Type.String(),
  status: Type.String(),
  position: Position,
});
const StatusChanged = Type.Object({ id: Uuid, status: Type.String(), position: Position });
const SuspendBody = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false });
const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false });

const notFound = () => new HttpProblem(404, 'customer_not_found', 'no such customer');

/**
 * The customer an email is reserved for when that customer was never registered (a request that
 * reserved it failed before its second append), or was registered by this very key: this request
 * then registers that customer instead of being refused the email for good. Two requests doing so
 * at once register it once; the other is refused as the customer exists, as is the first request
 * if it ever comes back. No second customer with the email can arise either way.
 */
async function orphanedHolderOf(write: WriteSide, emailNormalized: string, customerId: string, idempotencyKey: string): Promise<string | undefined> {
  const { state: reservation } = await write.emails.load(emailReservationStream(emailNormalized));
  if (reservation.status !== 'reserved' || reservation.customerId === customerId) return undefined;
  const holder = customerStream(reservation.customerId);
  const { state } = await write.customers.load(holder);
  if (state.status === 'none' || (await write.customers.findCommand(holder, idempotencyKey))) return reservation.customerId;
  return undefined;
}

export async function customerRoutes(app: FastifyInstance, { write }: { write: WriteSide }): Promise<void> {
  app.post(
    '/v1/customers',
    {
      config: { access: { roles: ['admin'] } },
      schema: {
        tags: ['customers'],
        summary: 'Register a customer (status pending_verification)',
        headers: IdempotencyHeaders,
        body: RegisterBody,
        response: { 201: CustomerCreated, ...problemResponses(400, 401, 403, 409, 422) },
      },
    },
    async (request, reply) => {
      const body = request.body as { email: string; firstName: string; lastName: string };
      const context = commandContext(request);
      let customerId = deterministicId('customer', context.idempotencyKey);
      // A key reused with another body must be refused before it reserves anything.
      const earlier = await write.customers.findCommand(customerStream(customerId), context.idempotencyKey);
      if (earlier && !isSameRequest(earlier, context)) throw new HttpProblem(422, 'idempotency_key_reused', 'this idempotency key was already used with a different request');
      // Everything the registration could refuse is checked before the email is reserved.
      validateName(body.firstName, 'firstName');
      validateName(body.lastName, 'lastName');
      const emailNormalized = normalizeEmail(validateEmail(body.email));
      customerId = await orphanedHolderOf(write, emailNormalized, customerId, context.idempotencyKey) ?? customerId;
      const stream = customerStream(customerId);
      const now = nowIso();
      await write.emails.handle(emailReservationStream(emailNormalized), { type: 'ReserveEmail', data: { emailNormalized, customerId, now } }, context);
      const result = await write.customers.handle(stream, { type: 'RegisterCustomer', data: { customerId, email: body.email, firstName: body.firstName, lastName: body.lastName, now } }, context);
      markReplay(reply, result);
      const registered = result.events.find((event): event is Extract<CustomerEvent, { type: 'CustomerRegistered' }> => event.type === 'CustomerRegistered');
      if (!registered) throw new HttpProblem(409, 'already_exists', 'this customer already exists');
      return reply
        .status(201)
        .header('location', `/v1/customers/${customerId}`)
        .send({ id: customerId, email: registered.data.email, firstName: registered.data.firstName, lastName: registered.data.lastName, status: 'pending_verification', position: result.position.toString() });
    },
  );

  const transitions = [
    { action: 'activate', type: 'ActivateCustomer', status: 'active' },
    { action: 'suspend', type: 'SuspendCustomer', status: 'suspended' },
    { action: 'reactivate', type: 'ReactivateCustomer', status: 'active' },
  ] as const;
  for (const transition of transitions) {
    app.post(
      `/v1/customers/:id/${transition.action}`,
      {
        config: { access: { roles: ['admin'] } },
        schema: {
          tags: ['customers'],
          summary: `${transition.action[0]!.toUpperCase()}${transition.action.slice(1)} a customer`,
          headers: IdempotencyHeaders,
          params: IdParams,
          body: transition.action === 'suspend' ? SuspendBody : NoBody,
          response: { 200: StatusChanged, ...problemResponses(400, 401, 403, 404, 409, 422) },
        },
      },
      async (request, reply) => {
        const { id } = request.params as { id: string };
        assertOwner(request, undefined, notFound);
        const context = commandContext(request);
        const data = { customerId: id, now: nowIso(), ...(transition.action === 'suspend' ? { reason: (request.body as { reason?: string } | undefined)?.reason ?? null } : {}) };
        const result = await write.customers.handle(customerStream(id), { type: transition.type, data } as never, context);
        markReplay(reply, result);
        return { id, status: transition.status, position: result.position.toString() };
      },
    );
  }
}

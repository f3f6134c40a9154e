import { describe, expect, it } from 'vitest';
import { BusinessRuleError, DomainValidationError, NotFoundError } from '../../src/domain/errors.js';
import type { CustomerEvent } from '../../src/domain/customer.js';
import { customerDecider, customerEventTypes, normalizeEmail } from '../../src/domain/customer.js';
import { deciderSpec } from './decider-spec.js';

const spec = deciderSpec(customerDecider);
const customerId = 'cus-1';
const now = '2025-01-02T03:04:05.000Z';
const later = '2025-01-03T00:00:00.000Z';

const registered: CustomerEvent = {
  type: 'CustomerRegistered',
  data: { customerId, email: 'Ada.Lovelace@Example.com', emailNormalized: 'ada.lovelace@example.com', firstName: 'Ada', lastName: 'Lovelace', at: now },
};
const activated: CustomerEvent = { type: 'CustomerActivated', data: { customerId, at: now } };
const suspended: CustomerEvent = { type: 'CustomerSuspended', data: { customerId, reason: null, at: now } };
const reactivated: CustomerEvent = { type: 'CustomerReactivated', data: { customerId, at: now } };

function register(overrides: Partial<{ email: string; firstName: string; lastName: string }> = {}) {
  return {
    type: 'RegisterCustomer' as const,
    data: { customerId, email: ' Ada.Lovelace@Example.com ', firstName: ' Ada ', lastName: 'Lovelace', now, ...overrides },
  };
}
const activate = { type: 'ActivateCustomer' as const, data: { customerId, now: later } };
const suspend = { type: 'SuspendCustomer' as const, data: { customerId, reason: ' fraud review ', now: later } };
const reactivate = { type: 'ReactivateCustomer' as const, data: { customerId, now: later } };

describe('customer event types', () => {
  it('lists every event type', () => {
    expect(customerEventTypes).toEqual(['CustomerRegistered', 'CustomerActivated', 'CustomerSuspended', 'CustomerReactivated']);
  });
});

describe('RegisterCustomer', () => {
  it('registers a new customer with trimmed fields and a normalized email', () => {
    spec.given([]).when(register()).then([registered]);
  });

  it('refuses to register an existing customer', () => {
    spec.given([registered]).when(register()).thenThrows('already_exists', BusinessRuleError);
  });

  it.each([
    'no-at-sign.example.com',
    'two@@example.com',
    'spaces in@example.com',
    'user@example',
    'user@-example.com',
    'user@example.c',
    '@example.com',
    'user@',
    'user@exa mple.com',
    'user\u0000@example.com',
    'user@example.com\n.evil',
    '.user@example.com',
    'user..name@example.com',
    `${'a'.repeat(65)}@example.com`,
    `a@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(60)}.com`,
    '',
    '   ',
  ])('rejects the email %j', (email) => {
    spec.given([]).when(register({ email })).thenThrows('invalid_email', DomainValidationError);
  });

  it.each(['', '   ', 'A'.repeat(101), 'Ada\u0007', 'Ada\nLovelace'])('rejects the first name %j', (firstName) => {
    spec.given([]).when(register({ firstName })).thenThrows('invalid_name', DomainValidationError);
  });

  it('accepts names of exactly 100 characters and non-Latin letters', () => {
    const events = spec.given([]).when(register({ firstName: 'A'.repeat(100), lastName: 'Ōtsuka-Łukasz' })).events();
    expect(events[0]?.type).toBe('CustomerRegistered');
  });

  it('rejects a last name that is empty', () => {
    spec.given([]).when(register({ lastName: ' ' })).thenThrows('invalid_name', DomainValidationError);
  });

  it('rejects a timestamp that is not ISO-8601 UTC', () => {
    spec
      .given([])
      .when({ ...register(), data: { ...register().data, now: '2025-01-02 03:04:05' } })
      .thenThrows('invalid_timestamp', DomainValidationError);
  });
});

describe('customer transitions', () => {
  it('activates a pending customer', () => {
    spec.given([registered]).when(activate).then([{ type: 'CustomerActivated', data: { customerId, at: later } }]);
  });

  it('suspends an active customer with a trimmed reason', () => {
    spec.given([registered, activated]).when(suspend).then([{ type: 'CustomerSuspended', data: { customerId, reason: 'fraud review', at: later } }]);
  });

  it('suspends without a reason', () => {
    spec
      .given([registered, activated])
      .when({ type: 'SuspendCustomer', data: { customerId, now: later } })
      .then([{ type: 'CustomerSuspended', data: { customerId, reason: null, at: later } }]);
  });

  it('reactivates a suspended customer', () => {
    spec.given([registered, activated, suspended]).when(reactivate).then([{ type: 'CustomerReactivated', data: { customerId, at: later } }]);
  });

  it('a reactivated customer can be suspended again', () => {
    spec.given([registered, activated, suspended, reactivated]).when(suspend).events();
  });

  it.each([
    ['activate an active customer', [registered, activated], activate],
    ['activate a suspended customer', [registered, activated, suspended], activate],
    ['suspend a pending customer', [registered], suspend],
    ['suspend a suspended customer', [registered, activated, suspended], suspend],
    ['reactivate a pending customer', [registered], reactivate],
    ['reactivate an active customer', [registered, activated], reactivate],
  ] as const)('refuses to %s', (_name, history, command) => {
    spec.given([...history]).when(command).thenThrows('invalid_state_transition', BusinessRuleError);
  });

  it.each([activate, suspend, reactivate])('refuses $type on a customer that does not exist', (command) => {
    spec.given([]).when(command).thenThrows('customer_not_found', NotFoundError);
  });
});

describe('normalizeEmail', () => {
  it('trims and lowercases', () => {
    expect(normalizeEmail('  Ada@Example.COM ')).toBe('ada@example.com');
  });
});

describe('customer evolve', () => {
  it('folds the lifecycle into state', () => {
    let state = customerDecider.initialState();
    for (const event of [registered, activated, suspended]) state = customerDecider.evolve(state, event);
    expect(state).toEqual({
      status: 'suspended',
      customerId,
      email: 'Ada.Lovelace@Example.com',
      emailNormalized: 'ada.lovelace@example.com',
      firstName: 'Ada',
      lastName: 'Lovelace',
      registeredAt: now,
    });
  });

  it('treats an event on a missing customer as a bug', () => {
    expect(() => customerDecider.evolve(customerDecider.initialState(), activated)).toThrow(Error);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AccountEvent } from '../../src/domain/account.js';
import type { CustomerEvent } from '../../src/domain/customer.js';
import type { EmailReservationEvent } from '../../src/domain/emailReservation.js';
import { accountDecider } from '../../src/domain/account.js';
import { trialBalance, assertTrialBalanceZero } from '../../src/domain/ledger.js';
import type { JsonObject, JsonValue } from '../../src/shared/json.js';
import { assertJsonObject, decodeJson, encodeJson } from '../../src/shared/json.js';
import { cmd, history } from './account-fixtures.js';

// Compile-time: every event's data is plain JSON (with bigints), so the store can take it as is.
const accountData = (data: AccountEvent['data']): JsonObject => data;
const customerData = (data: CustomerEvent['data']): JsonObject => data;
const reservationData = (data: EmailReservationEvent['data']): JsonObject => data;

describe('event data is JSON', () => {
  const events = history(
    cmd.open({ overdraftLimitMinor: 100n }),
    cmd.deposit(1000n, { reference: 'ref', description: 'desc' }),
    cmd.withdraw(10n),
    cmd.placeHold('h1', 100n),
    cmd.captureHold('h1', { amountMinor: 40n }),
    cmd.placeHold('h2', 100n),
    cmd.releaseHold('h2'),
    cmd.placeTransferHold('t1', 50n),
    cmd.captureTransferHold('t1'),
    cmd.creditTransfer('t2', 50n),
    cmd.placeTransferHold('t3', 10n, { currency: 'USD' }),
    cmd.creditTransfer('t4', 10n, { currency: 'USD' }),
    cmd.freeze(),
    cmd.unfreeze(),
    cmd.setOverdraft(0n),
    cmd.placeHold('h3', 100n),
    cmd.expireHold('h3'),
  );

  it('covers the main event types', () => {
    expect(new Set(events.map((event) => event.type)).size).toBe(13);
  });

  it('round-trips every event through the bigint-safe JSON codec and replays the same state', () => {
    for (const event of events) {
      assertJsonObject(accountData(event.data), event.type);
      expect(decodeJson(encodeJson(event.data))).toEqual(event.data);
    }
    const decoded = events.map((event) => ({ type: event.type, data: decodeJson(encodeJson(event.data)) }) as AccountEvent);
    expect(decoded.reduce(accountDecider.evolve, accountDecider.initialState())).toEqual(events.reduce(accountDecider.evolve, accountDecider.initialState()));
    assertTrialBalanceZero(trialBalance(decoded));
  });

  it('has plain-JSON customer and reservation data', () => {
    const registered: CustomerEvent = { type: 'CustomerRegistered', data: { customerId: 'c', email: 'a@b.co', emailNormalized: 'a@b.co', firstName: 'A', lastName: 'B', at: 'x' } };
    const reserved: EmailReservationEvent = { type: 'CustomerEmailReserved', data: { emailNormalized: 'a@b.co', customerId: 'c', at: 'x' } };
    expect(() => assertJsonObject(customerData(registered.data))).not.toThrow();
    expect(() => assertJsonObject(reservationData(reserved.data))).not.toThrow();
  });
});

describe('the bigint-safe JSON codec', () => {
  const jsonWithBigints = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      fc.string().filter((text) => !text.includes('\u0000') && text.isWellFormed()),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }),
      fc.array(tie('value'), { maxLength: 4 }),
      fc.dictionary(fc.string().filter((key) => key !== '$bigint' && key !== '__proto__'), tie('value'), { maxKeys: 4 }),
    ),
  })).value;

  it('decodes whatever it encoded, bigints included, nested anywhere', () => {
    fc.assert(
      fc.property(jsonWithBigints, (value) => {
        expect(decodeJson(encodeJson(value as JsonValue))).toEqual(value);
      }),
    );
  });

  it('turns only a lone, well-formed $bigint tag into a bigint', () => {
    expect(decodeJson('{"a":{"$bigint":"-12"},"b":[{"$bigint":"0"}]}')).toEqual({ a: -12n, b: [0n] });
    expect(decodeJson('{"a":{"$bigint":"1.5"}}')).toEqual({ a: { $bigint: '1.5' } });
    expect(decodeJson('{"a":{"$bigint":"01"}}')).toEqual({ a: { $bigint: '01' } });
    expect(decodeJson('{"a":{"$bigint":"7","x":1}}')).toEqual({ a: { $bigint: '7', x: 1 } });
    expect(decodeJson('{"a":{"$bigint":7}}')).toEqual({ a: { $bigint: 7 } });
    expect(decodeJson('{"a":"{\\"$bigint\\":\\"7\\"}"}')).toEqual({ a: '{"$bigint":"7"}' });
  });
});

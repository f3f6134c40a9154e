import { describe, expect, it } from 'vitest';
import { BusinessRuleError, DomainValidationError } from '../../src/domain/errors.js';
import {
  MAX_AMOUNT_MINOR,
  MAX_BALANCE_MINOR,
  addChecked,
  currencyExponent,
  formatAmount,
  isCurrency,
  parseAmount,
  subChecked,
  supportedCurrencies,
} from '../../src/domain/money.js';

function validationCode(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DomainValidationError);
    return (error as DomainValidationError).code;
  }
  throw new Error('expected a DomainValidationError');
}

describe('currencies', () => {
  it.each([
    ['EUR', 2], ['USD', 2], ['GBP', 2], ['CHF', 2], ['JPY', 0], ['KRW', 0], ['ISK', 0], ['CLP', 0], ['VND', 0],
    ['KWD', 3], ['BHD', 3], ['JOD', 3], ['OMR', 3], ['TND', 3], ['LYD', 3], ['IQD', 3], ['CLF', 4], ['UYW', 4],
  ])('%s has exponent %i', (code, exponent) => {
    expect(isCurrency(code)).toBe(true);
    expect(currencyExponent(code)).toBe(exponent);
  });

  it('knows at least 40 currencies', () => {
    expect(supportedCurrencies.length).toBeGreaterThanOrEqual(40);
  });

  it.each(['eur', 'XXX', '', 'EURO', 'toString', '__proto__'])('rejects %j', (code) => {
    expect(isCurrency(code)).toBe(false);
    expect(validationCode(() => currencyExponent(code))).toBe('unknown_currency');
  });
});

describe('parseAmount', () => {
  it.each([
    ['12.30', 'EUR', 1230n],
    ['12.3', 'EUR', 1230n],
    ['12', 'EUR', 1200n],
    ['0.01', 'EUR', 1n],
    ['500', 'JPY', 500n],
    ['1', 'JPY', 1n],
    ['0.001', 'KWD', 1n],
    ['1.5', 'KWD', 1500n],
    ['1.2345', 'CLF', 12345n],
    ['0.0001', 'CLF', 1n],
    ['10000000000000', 'EUR', MAX_AMOUNT_MINOR],
    ['1000000000000000', 'JPY', MAX_AMOUNT_MINOR],
  ])('%s %s is %s minor units', (text, currency, minor) => {
    expect(parseAmount(text, currency)).toBe(minor);
  });

  it.each([
    ['1e3', 'EUR', 'invalid_amount'],
    ['+1', 'EUR', 'invalid_amount'],
    ['-1', 'EUR', 'invalid_amount'],
    ['-0', 'EUR', 'invalid_amount'],
    ['01', 'EUR', 'invalid_amount'],
    ['00.10', 'EUR', 'invalid_amount'],
    [' 1', 'EUR', 'invalid_amount'],
    ['1 ', 'EUR', 'invalid_amount'],
    ['1.', 'EUR', 'invalid_amount'],
    ['.5', 'EUR', 'invalid_amount'],
    ['1,50', 'EUR', 'invalid_amount'],
    ['', 'EUR', 'invalid_amount'],
    ['0x10', 'EUR', 'invalid_amount'],
    ['Infinity', 'EUR', 'invalid_amount'],
    ['1'.repeat(41), 'EUR', 'invalid_amount'],
    ['0', 'EUR', 'amount_must_be_positive'],
    ['0.00', 'EUR', 'amount_must_be_positive'],
    ['0', 'JPY', 'amount_must_be_positive'],
    ['12.345', 'EUR', 'too_many_decimals'],
    ['500.0', 'JPY', 'too_many_decimals'],
    ['1.0000', 'KWD', 'too_many_decimals'],
    ['1.00001', 'CLF', 'too_many_decimals'],
    ['10000000000000.01', 'EUR', 'amount_limit_exceeded'],
    ['1000000000000001', 'JPY', 'amount_limit_exceeded'],
    ['1', 'XXX', 'unknown_currency'],
  ])('rejects %j %s with %s', (text, currency, code) => {
    expect(validationCode(() => parseAmount(text, currency))).toBe(code);
  });
});

describe('formatAmount', () => {
  it.each([
    [1230n, 'EUR', '12.30'],
    [-5n, 'EUR', '-0.05'],
    [0n, 'EUR', '0.00'],
    [500n, 'JPY', '500'],
    [-500n, 'JPY', '-500'],
    [1n, 'KWD', '0.001'],
    [1500n, 'KWD', '1.500'],
    [12345n, 'CLF', '1.2345'],
    [1n, 'CLF', '0.0001'],
    [MAX_BALANCE_MINOR, 'EUR', '1000000000000000.00'],
  ])('%s %s is %s', (minor, currency, text) => {
    expect(formatAmount(minor, currency)).toBe(text);
  });

  it.each(['EUR', 'JPY', 'KWD', 'CLF'])('round-trips through parseAmount in %s', (currency) => {
    for (const minor of [1n, 9n, 10n, 99n, 100n, 1234567n, MAX_AMOUNT_MINOR]) {
      expect(parseAmount(formatAmount(minor, currency), currency)).toBe(minor);
    }
  });
});

describe('checked arithmetic', () => {
  it('allows results up to the balance limit in both directions', () => {
    expect(addChecked(MAX_BALANCE_MINOR - 1n, 1n)).toBe(MAX_BALANCE_MINOR);
    expect(subChecked(-MAX_BALANCE_MINOR + 1n, 1n)).toBe(-MAX_BALANCE_MINOR);
  });

  it('throws balance_limit_exceeded one minor unit beyond', () => {
    expect(() => addChecked(MAX_BALANCE_MINOR, 1n)).toThrow(BusinessRuleError);
    expect(() => subChecked(-MAX_BALANCE_MINOR, 1n)).toThrow(expect.objectContaining({ code: 'balance_limit_exceeded', status: 422 }));
  });
});

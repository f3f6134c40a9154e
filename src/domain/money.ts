/**
 * Money is a `bigint` count of minor units (cents, fils, yen). A currency's exponent (the number of
 * minor-unit digits, ISO 4217) never changes, so a stored amount never needs rescaling.
 */
import { BusinessRuleError, DomainValidationError } from './errors.js';

export type CurrencyCode = string;

/** ISO 4217 active currencies and their minor-unit exponents. Frozen: an asset's scale never changes. */
const CURRENCY_EXPONENTS: Readonly<Record<string, number>> = Object.freeze({
  AED: 2, ARS: 2, AUD: 2, BDT: 2, BGN: 2, BHD: 3, BIF: 0, BRL: 2, CAD: 2, CHF: 2,
  CLF: 4, CLP: 0, CNY: 2, COP: 2, CZK: 2, DJF: 0, DKK: 2, EGP: 2, EUR: 2, GBP: 2,
  GNF: 0, HKD: 2, HUF: 2, IDR: 2, ILS: 2, INR: 2, IQD: 3, ISK: 0, JOD: 3, JPY: 0,
  KES: 2, KMF: 0, KRW: 0, KWD: 3, LYD: 3, MAD: 2, MXN: 2, MYR: 2, NGN: 2, NOK: 2,
  NZD: 2, OMR: 3, PHP: 2, PKR: 2, PLN: 2, PYG: 0, QAR: 2, RON: 2, RSD: 2, RWF: 0,
  SAR: 2, SEK: 2, SGD: 2, THB: 2, TND: 3, TRY: 2, TWD: 2, UAH: 2, UGX: 0, USD: 2,
  UYU: 2, UYW: 4, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0, ZAR: 2,
});

/**
 * Largest amount one movement (deposit, withdrawal, hold, transfer) may carry: 10^15 minor units,
 * i.e. 10 trillion EUR. It keeps every sum of a bounded number of movements far inside int8.
 */
export const MAX_AMOUNT_MINOR = 10n ** 15n;

/**
 * Absolute bound for any balance, overdraft limit or held sum: 10^17 minor units. int8 tops out
 * near 9.2 * 10^18, so even a sum of a few such values cannot overflow a PostgreSQL column.
 */
export const MAX_BALANCE_MINOR = 10n ** 17n;

/** Bounds the work parseAmount does before the regex and BigInt see the text. */
const AMOUNT_TEXT_LENGTH_MAX = 40;
const AMOUNT_TEXT = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?$/;

export const supportedCurrencies: readonly CurrencyCode[] = Object.freeze(Object.keys(CURRENCY_EXPONENTS).sort());

export function isCurrency(code: string): code is CurrencyCode {
  return Object.hasOwn(CURRENCY_EXPONENTS, code);
}

/** Throws DomainValidationError `unknown_currency` for a code outside the table. */
export function currencyExponent(code: string): number {
  const exponent = isCurrency(code) ? CURRENCY_EXPONENTS[code] : undefined;
  if (exponent === undefined) throw new DomainValidationError('unknown_currency', `unknown currency ${JSON.stringify(code)}`, { currency: code });
  return exponent;
}

export function assertCurrency(code: string): asserts code is CurrencyCode {
  currencyExponent(code);
}

/**
 * Parses a strict decimal string in major units ("12.30" EUR) into minor units (1230n). No signs,
 * exponents, whitespace, leading zeros or more decimals than the currency has; zero is refused.
 */
export function parseAmount(text: string, currency: string): bigint {
  const exponent = currencyExponent(currency);
  if (typeof text !== 'string' || text.length > AMOUNT_TEXT_LENGTH_MAX) {
    throw new DomainValidationError('invalid_amount', 'amount must be a decimal string of at most 40 characters');
  }
  const match = AMOUNT_TEXT.exec(text);
  if (match === null) throw new DomainValidationError('invalid_amount', `amount ${JSON.stringify(text)} is not a plain decimal number`);
  const integerDigits = match[1] ?? '0';
  const fractionDigits = match[2] ?? '';
  if (fractionDigits.length > exponent) {
    throw new DomainValidationError('too_many_decimals', `${currency} allows at most ${exponent} decimals`, { currency, exponent });
  }
  const amountMinor = BigInt(integerDigits + fractionDigits.padEnd(exponent, '0'));
  if (amountMinor === 0n) throw new DomainValidationError('amount_must_be_positive', 'amount must be greater than zero');
  if (amountMinor > MAX_AMOUNT_MINOR) {
    throw new DomainValidationError('amount_limit_exceeded', `amount exceeds the per-movement limit of ${formatAmount(MAX_AMOUNT_MINOR, currency)} ${currency}`);
  }
  return amountMinor;
}

/** Exact, signed rendering in major units: 1230n EUR -> "12.30", -5n EUR -> "-0.05", 500n JPY -> "500". */
export function formatAmount(minor: bigint, currency: string): string {
  const exponent = currencyExponent(currency);
  const sign = minor < 0n ? '-' : '';
  const digits = (minor < 0n ? -minor : minor).toString();
  if (exponent === 0) return sign + digits;
  const padded = digits.padStart(exponent + 1, '0');
  return `${sign}${padded.slice(0, -exponent)}.${padded.slice(-exponent)}`;
}

export function isWithinBalanceLimit(minor: bigint): boolean {
  return minor >= -MAX_BALANCE_MINOR && minor <= MAX_BALANCE_MINOR;
}

function checkedResult(resultMinor: bigint): bigint {
  if (!isWithinBalanceLimit(resultMinor)) {
    throw new BusinessRuleError('balance_limit_exceeded', 'the result would exceed the balance limit', { limitMinor: MAX_BALANCE_MINOR });
  }
  return resultMinor;
}

/** a + b, or BusinessRuleError `balance_limit_exceeded` when |a + b| > MAX_BALANCE_MINOR. */
export function addChecked(a: bigint, b: bigint): bigint {
  return checkedResult(a + b);
}

/** a - b, or BusinessRuleError `balance_limit_exceeded` when |a - b| > MAX_BALANCE_MINOR. */
export function subChecked(a: bigint, b: bigint): bigint {
  return checkedResult(a - b);
}

import { createHash } from 'node:crypto';

/** Stream names. Categories are prefixes, so projections subscribe by prefix. */
export const STREAM_PREFIX = {
  customer: 'customer-',
  email: 'email-',
  account: 'account-',
  transfer: 'transfer-',
} as const;

export const customerStream = (customerId: string) => `${STREAM_PREFIX.customer}${customerId}`;
export const accountStream = (accountId: string) => `${STREAM_PREFIX.account}${accountId}`;
export const transferStream = (transferId: string) => `${STREAM_PREFIX.transfer}${transferId}`;
/** Hashed, so the stream name carries no personal data. */
export const emailReservationStream = (emailNormalized: string) => `${STREAM_PREFIX.email}${createHash('sha256').update(emailNormalized).digest('hex')}`;

import { describe, expect, it } from 'vitest';
import { formerRequestFingerprint, isSameRequest, requestFingerprint } from '../../src/shared/requestFingerprint.js';

describe('request fingerprints', () => {
  const body = { transferId: 't', amount: '1.00', description: 'rent', tags: ['a', 'b'], nested: { b: 1, a: null } };

  it('are the same for a retry that orders its keys otherwise or sends an empty optional field as null', () => {
    const reordered = { nested: { a: null, b: 1 }, tags: ['a', 'b'], description: 'rent', amount: '1.00', transferId: 't' };
    expect(requestFingerprint('POST', '/x', reordered)).toBe(requestFingerprint('POST', '/x', body));
    expect(requestFingerprint('POST', '/x', { amount: '1.00', description: null })).toBe(requestFingerprint('POST', '/x', { amount: '1.00' }));
  });

  it('differ for another value, another order of array items, another route or an extra field', () => {
    const base = requestFingerprint('POST', '/x', body);
    expect(requestFingerprint('POST', '/x', { ...body, amount: '1.01' })).not.toBe(base);
    expect(requestFingerprint('POST', '/x', { ...body, tags: ['b', 'a'] })).not.toBe(base);
    expect(requestFingerprint('POST', '/y', body)).not.toBe(base);
    expect(requestFingerprint('POST', '/x', { ...body, reference: 'r' })).not.toBe(base);
    expect(requestFingerprint('POST', '/x', { ...body, description: '' })).not.toBe(base);
  });

  it('match a request recorded with the former fingerprint, asking for it only when the canonical one differs', () => {
    let asked = 0;
    const context = {
      requestHash: requestFingerprint('POST', '/x', body),
      formerRequestHash: () => {
        asked += 1;
        return formerRequestFingerprint('POST', '/x', body);
      },
    };
    expect(isSameRequest(context.requestHash, context)).toBe(true);
    expect(asked).toBe(0);
    expect(isSameRequest(formerRequestFingerprint('POST', '/x', body), context)).toBe(true);
    expect(isSameRequest(formerRequestFingerprint('POST', '/x', { ...body, amount: '2.00' }), context)).toBe(false);
    expect(isSameRequest(formerRequestFingerprint('POST', '/x', body), { requestHash: context.requestHash })).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import { isSameRequest, requestFingerprints } from '../../src/shared/requestFingerprint.js';

describe('request fingerprints', () => {
  const body = { transferId: 't', amount: '1.00', description: 'rent', tags: ['a', 'b'], nested: { b: 1, a: null } };
  const canonicalOf = (...parts: unknown[]) => requestFingerprints(...parts).canonicalRequestHash;

  it('are canonically the same for a retry that orders its keys otherwise or sends an empty optional field as null', () => {
    const reordered = { nested: { a: null, b: 1 }, tags: ['a', 'b'], description: 'rent', amount: '1.00', transferId: 't' };
    expect(canonicalOf('POST', '/x', reordered)).toBe(canonicalOf('POST', '/x', body));
    expect(canonicalOf('POST', '/x', { amount: '1.00', description: null })).toBe(canonicalOf('POST', '/x', { amount: '1.00' }));
    // The raw one, which every version records and compares, stays the JSON as sent.
    expect(requestFingerprints('POST', '/x', reordered).requestHash).not.toBe(requestFingerprints('POST', '/x', body).requestHash);
  });

  it('differ for another value, another order of array items, another route or an extra field', () => {
    const base = canonicalOf('POST', '/x', body);
    expect(canonicalOf('POST', '/x', { ...body, amount: '1.01' })).not.toBe(base);
    expect(canonicalOf('POST', '/x', { ...body, tags: ['b', 'a'] })).not.toBe(base);
    expect(canonicalOf('POST', '/y', body)).not.toBe(base);
    expect(canonicalOf('POST', '/x', { ...body, reference: 'r' })).not.toBe(base);
    expect(canonicalOf('POST', '/x', { ...body, description: '' })).not.toBe(base);
  });

  it('compare canonically where both sides have a canonical one, else raw (a request recorded before them)', () => {
    const request = requestFingerprints('POST', '/x', body);
    const reordered = requestFingerprints('POST', '/x', { nested: { b: 1 }, tags: ['a', 'b'], description: 'rent', amount: '1.00', transferId: 't' });
    expect(isSameRequest(reordered, request)).toBe(true);
    expect(isSameRequest({ requestHash: request.requestHash }, request)).toBe(true);
    expect(isSameRequest({ requestHash: reordered.requestHash }, request)).toBe(false);
    expect(isSameRequest(requestFingerprints('POST', '/x', { ...body, amount: '2.00' }), request)).toBe(false);
    // A raw fingerprint that is the canonical one (JSON sent canonical, or an interim build's record) still matches.
    expect(isSameRequest({ requestHash: request.canonicalRequestHash }, request)).toBe(true);
    expect(isSameRequest({ requestHash: requestFingerprints('POST', '/x', { ...body, amount: '2.00' }).canonicalRequestHash }, request)).toBe(false);
  });
});

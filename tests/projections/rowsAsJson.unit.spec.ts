import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rowsAsJson } from '../../src/projections/projection.js';

const bigintsAsStrings = (_key: string, value: unknown) => (typeof value === 'bigint' ? value.toString() : value);

describe('rows written as one JSON parameter', () => {
  it('says exactly what JSON.stringify with bigints as strings says, for any row', () => {
    const cell = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      fc.date({ noInvalidDate: true }),
      fc.constant(null),
      fc.integer(),
      fc.boolean(),
      fc.array(fc.record({ stage: fc.string(), position: fc.bigInt({ min: 0n, max: 2n ** 40n }) }), { maxLength: 3 }),
    );
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 5 }), fc.infiniteStream(cell), (keys, count, cells) => {
        const rows = Array.from({ length: count }, () => Object.fromEntries(keys.map((key) => [key, cells.next().value])));
        expect(JSON.parse(rowsAsJson(keys, rows))).toEqual(JSON.parse(JSON.stringify(rows, bigintsAsStrings)));
      }),
      { numRuns: 500 },
    );
  });

  it('writes an undefined cell as null, so the column gets null rather than disappearing', () => {
    expect(JSON.parse(rowsAsJson(['a', 'b'], [{ a: undefined, b: 1n }]))).toEqual([{ a: null, b: '1' }]);
  });
});

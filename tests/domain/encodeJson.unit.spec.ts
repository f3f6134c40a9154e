import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assertJsonValue, encodeCanonicalJson, encodeJson, JsonEncodingError, type JsonValue } from '../../src/shared/json.js';

/** The encoder as it was: check everything, then stringify with a replacer that tags bigints. */
function referenceEncode(value: unknown): string {
  assertJsonValue(value);
  return JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? { $bigint: item.toString() } : item));
}

function outcome(encode: (value: unknown) => string, value: unknown): { text: string } | { error: string } {
  try {
    return { text: encode(value) };
  } catch (error) {
    return { error: `${(error as Error).name}: ${(error as Error).message}` };
  }
}

const awkwardStrings = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.constantFrom('\u0000', 'a\u0000b', '\ud800', 'x\udc00', '"\\\n\t', '$bigint', '__proto__'));
const awkwardNumbers = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(-0, 2 ** 53, -(2 ** 53), 1e21, Number.NaN, Number.POSITIVE_INFINITY, 0.1));
const leaf = fc.oneof(awkwardStrings, awkwardNumbers, fc.boolean(), fc.constant(null), fc.bigInt(), fc.constantFrom(undefined, () => 1, Symbol('s'), new Date(0), new Map()));
const value = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('array'), tie('object'), tie('sparse'), tie('bare')),
  array: fc.array(tie('node'), { maxLength: 4 }),
  sparse: fc.array(tie('node'), { maxLength: 4 }).map((items) => {
    const holes = [...items];
    holes.length += 2;
    return holes;
  }),
  object: fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('$bigint', 'toJSON', 'a')), tie('node'), { maxKeys: 4 }),
  bare: fc.dictionary(fc.string(), tie('node'), { maxKeys: 3 }).map((entries) => Object.assign(Object.create(null) as object, entries)),
}));

function nested(depth: number): JsonValue {
  let node: JsonValue = 1n;
  for (let level = 0; level < depth; level++) node = level % 2 === 0 ? [node] : { inner: node };
  return node;
}

describe('encodeJson: one pass, the same text and the same refusals as check-then-stringify', () => {
  it('agrees with the reference on arbitrary values, bigints, holes and refusals included', () => {
    fc.assert(
      fc.property(value.node, (candidate) => {
        expect(outcome(encodeJson as (value: unknown) => string, candidate)).toEqual(outcome(referenceEncode, candidate));
      }),
      { numRuns: 3_000 },
    );
  });

  it('agrees at the nesting bound and just past it', () => {
    for (const depth of [31, 32, 33, 34]) expect(outcome(encodeJson as (value: unknown) => string, nested(depth))).toEqual(outcome(referenceEncode, nested(depth)));
  });

  it('writes an event as the store expects it', () => {
    expect(encodeJson({ accountId: 'a', amountMinor: 1050n, note: null, tags: ['x'], flag: true })).toBe('{"accountId":"a","amountMinor":{"$bigint":"1050"},"note":null,"tags":["x"],"flag":true}');
  });

  it('refuses what JSON or jsonb cannot hold exactly, and takes the edge cases that they can', () => {
    const refused: unknown[] = [Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -(2 ** 53), 'a\u0000b', '\ud800', 'x\udc00', new Date(0), new Map(), { $bigint: '1' }, { a: undefined }, [() => 1], Symbol('s'), nested(33)];
    for (const value of refused) expect(() => encodeJson(value as JsonValue), String(typeof value)).toThrow(JsonEncodingError);
    const taken: [unknown, string][] = [
      [2 ** 53 - 1, '9007199254740991'],
      [-0, '0'],
      [0.1, '0.1'],
      ['😀 "quoted" \\ \n', JSON.stringify('😀 "quoted" \\ \n')],
      [Object.assign(Object.create(null) as object, { a: 1n }), '{"a":{"$bigint":"1"}}'],
      [nested(32), JSON.stringify(JSON.parse(encodeJson(nested(32))))],
    ];
    for (const [value, text] of taken) expect(encodeJson(value as JsonValue)).toBe(text);
  });
});

describe('encodeCanonicalJson: the same text for values that differ only in key order', () => {
  /** The same value with the keys of every object in reverse order. */
  function reversed(value: JsonValue): JsonValue {
    if (typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) return value.map(reversed);
    return Object.fromEntries(Object.keys(value).reverse().map((key) => [key, reversed(value[key]!)]));
  }
  const json = fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small' }, fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.bigInt(), tie('array'), tie('object')),
    array: fc.array(tie('node'), { maxLength: 4 }),
    object: fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('__proto__', '1', '10', 'a')), tie('node'), { maxKeys: 5 }),
  })).node as fc.Arbitrary<JsonValue>;

  it('ignores key order at every level, and nothing else', () => {
    fc.assert(
      fc.property(json, (value) => {
        expect(encodeCanonicalJson(reversed(value))).toBe(encodeCanonicalJson(value));
        // It is encodeJson of a reordering: reading it back gives the same value.
        expect(JSON.parse(encodeCanonicalJson(value))).toEqual(JSON.parse(encodeJson(value)));
      }),
    );
    expect(encodeCanonicalJson({ b: 1, a: { d: [{ f: 2n, e: 1 }], c: 0 } })).toBe('{"a":{"c":0,"d":[{"e":1,"f":{"$bigint":"2"}}]},"b":1}');
    expect(encodeCanonicalJson({ a: [1, 2] })).not.toBe(encodeCanonicalJson({ a: [2, 1] }));
  });

  it('refuses what encodeJson refuses', () => {
    expect(() => encodeCanonicalJson({ b: Number.NaN, a: 1 })).toThrow(JsonEncodingError);
    expect(() => encodeCanonicalJson({ a: nested(40) })).toThrow(JsonEncodingError);
  });
});

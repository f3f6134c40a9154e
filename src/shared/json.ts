/**
 * Bigint-safe JSON for event data and metadata.
 *
 * A bigint is written as `{"$bigint":"<decimal>"}` and read back as a bigint, so money never passes
 * through a JS number on its way to or from the store. Anything that JSON cannot represent exactly
 * (undefined, functions, symbols, NaN, Infinity, class instances, cycles) is refused on encode.
 */
export type JsonPrimitive = string | number | boolean | null | bigint;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

const BIGINT_TAG = '$bigint';
const BIGINT_TEXT = /^-?(0|[1-9][0-9]*)$/;
const MAX_DEPTH = 32;

export class JsonEncodingError extends Error {
  override name = 'JsonEncodingError';
}

// The rules both the checker and the writer apply.
/** PostgreSQL's jsonb refuses NUL and unpaired surrogates; they are refused before they reach any store. */
const isStorableString = (text: string): boolean => !text.includes('\u0000') && text.isWellFormed();
/** Finite, and an integer only within the safe range (larger ones must be bigints). */
const isExactNumber = (number: number): boolean => Number.isFinite(number) && (!Number.isInteger(number) || Number.isSafeInteger(number));
const isPlainObject = (value: object): boolean => {
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
};

/** Throws JsonEncodingError unless `value` is plain JSON (plus bigints) that round-trips exactly. */
export function assertJsonValue(value: unknown, path = '$', depth = 0): asserts value is JsonValue {
  if (depth > MAX_DEPTH) throw new JsonEncodingError(`${path}: nested deeper than ${MAX_DEPTH} levels`);
  switch (typeof value) {
    case 'string':
      if (!isStorableString(value)) throw new JsonEncodingError(`${path}: string holds a NUL or an unpaired surrogate`);
      return;
    case 'boolean':
    case 'bigint':
      return;
    case 'number':
      if (!isExactNumber(value)) {
        throw new JsonEncodingError(Number.isFinite(value) ? `${path}: ${value} is beyond the safe integer range; use a bigint` : `${path}: ${value} is not representable in JSON`);
      }
      return;
    case 'object': {
      if (value === null) return;
      if (Array.isArray(value)) {
        value.forEach((item, index) => assertJsonValue(item, `${path}[${index}]`, depth + 1));
        return;
      }
      if (!isPlainObject(value)) throw new JsonEncodingError(`${path}: only plain objects are allowed`);
      for (const [key, item] of Object.entries(value)) {
        if (key === BIGINT_TAG) throw new JsonEncodingError(`${path}: the key ${BIGINT_TAG} is reserved`);
        assertJsonValue(item, `${path}.${key}`, depth + 1);
      }
      return;
    }
    default:
      throw new JsonEncodingError(`${path}: a ${typeof value} is not JSON`);
  }
}

export function assertJsonObject(value: unknown, what = 'value'): asserts value is JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new JsonEncodingError(`${what} must be a JSON object`);
  assertJsonValue(value, what);
}

/**
 * One pass that checks and writes: the same text as `JSON.stringify` with bigints tagged, and the
 * same refusals as `assertJsonValue`. (Checking first, then stringifying with a replacer function,
 * walked every value twice, built a path string per node and left V8's fast stringify: 4.5 % of
 * the ledger's CPU in the transfers benchmark.) A property test holds it to that reference.
 */
export function encodeJson(value: JsonValue): string {
  try {
    return writeJson(value, 0);
  } catch (error) {
    if (error !== NOT_JSON) throw error;
    // Refused: say where, with the checker's path.
    assertJsonValue(value);
    throw new JsonEncodingError('$: not JSON');
  }
}

/**
 * `encodeJson` with the keys of every object in sorted order: values that differ only in key order
 * get the same text, as PostgreSQL's jsonb compares them equal. For comparing, not for storing.
 */
export function encodeCanonicalJson(value: JsonValue): string {
  return encodeJson(sortedKeys(value, 0));
}

function sortedKeys(value: JsonValue, depth: number): JsonValue {
  // Past the bound, or not plain JSON: left as is, for encodeJson to refuse.
  if (typeof value !== 'object' || value === null || depth > MAX_DEPTH) return value;
  if (Array.isArray(value)) return value.map((item) => sortedKeys(item, depth + 1));
  if (!isPlainObject(value)) return value;
  // fromEntries defines each key as its own property, `__proto__` included.
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, sortedKeys(value[key]!, depth + 1)]),
  ) as JsonObject;
}

const NOT_JSON = new Error('not JSON');
// eslint-disable-next-line no-control-regex -- exactly the characters JSON must escape
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify of a string, without the call for the common text that needs no escape. */
function quote(text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`;
}

function writeJson(value: unknown, depth: number): string {
  if (depth > MAX_DEPTH) throw NOT_JSON;
  switch (typeof value) {
    case 'string':
      if (!isStorableString(value)) throw NOT_JSON;
      return quote(value);
    case 'number':
      if (!isExactNumber(value)) throw NOT_JSON;
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return `{"${BIGINT_TAG}":"${value.toString()}"}`;
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let text = '[';
        for (let index = 0; index < value.length; index++) {
          if (index > 0) text += ',';
          // A hole is skipped by the checker and written as null by JSON.stringify.
          text += index in value ? writeJson(value[index], depth + 1) : 'null';
        }
        return text + ']';
      }
      if (!isPlainObject(value)) throw NOT_JSON;
      const record = value as Record<string, unknown>;
      let text = '{';
      let first = true;
      for (const key of Object.keys(record)) {
        if (key === BIGINT_TAG) throw NOT_JSON;
        text += `${first ? '' : ','}${quote(key)}:${writeJson(record[key], depth + 1)}`;
        first = false;
      }
      return text + '}';
    }
    default:
      throw NOT_JSON;
  }
}

export function decodeJson<T = JsonValue>(text: string): T {
  const parsed: unknown = JSON.parse(text);
  // Most stored documents hold no bigint at all; the check is one native scan of the text.
  return (text.includes(`"${BIGINT_TAG}"`) ? reviveBigints(parsed) : parsed) as T;
}

/**
 * Turns `{"$bigint": "..."}` nodes of already-parsed JSON (just parsed, or handed over by a client
 * library) into bigints. In place: the value must be one nobody else holds. Tagged nodes are
 * replaced where they are instead of copying every object and array, since reading events is the
 * projections' hottest path.
 */
export function reviveBigints(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      const item: unknown = value[index];
      const revived = reviveBigints(item);
      if (revived !== item) value[index] = revived;
    }
    return value;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  const tagged = record[BIGINT_TAG];
  if (keys.length === 1 && typeof tagged === 'string' && BIGINT_TEXT.test(tagged)) return BigInt(tagged);
  for (const key of keys) {
    const item = record[key];
    const revived = reviveBigints(item);
    if (revived !== item) record[key] = revived;
  }
  return record;
}

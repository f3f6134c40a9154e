import type { FastifyInstance } from 'fastify';
import { visit } from 'jsonc-parser';
import { HttpProblem } from './problem.js';

/**
 * The first key that stands twice in one object of this JSON text, else undefined.
 *
 * `JSON.parse` keeps the last of two equal keys without a word, so `{"amount":"1.00",…,"amount":"900.00"}`
 * would deposit 900.00 while a gateway or an audit log that keeps the first saw 1.00. Names are
 * compared decoded (`"\u0061"` is `"a"`), as the parser compares them.
 */
export function duplicateKeyOf(text: string): string | undefined {
  const open: Set<string>[] = [];
  let duplicate: string | undefined;
  visit(text, {
    onObjectBegin: () => {
      open.push(new Set());
    },
    onObjectEnd: () => {
      open.pop();
    },
    onObjectProperty: (name) => {
      const keys = open.at(-1);
      if (keys === undefined || duplicate !== undefined) return;
      if (keys.has(name)) duplicate = name;
      else keys.add(name);
    },
  });
  return duplicate;
}

const UTF8 = /^utf-?8$/i;
const ASCII_COMPATIBLE = /^(us-ascii|ascii|iso-8859-1|latin1|windows-1252)$/i;
// eslint-disable-next-line no-control-regex -- NUL to DEL is exactly ASCII
const ASCII_ONLY = /^[\x00-\x7f]*$/;

/**
 * Replaces Fastify's JSON body parser with one that refuses, with a 4xx and before any handler runs,
 * what the default takes silently: a key given twice in one object, and a declared charset other
 * than UTF-8 (the body would be read as UTF-8 anyway); and it is the only body parser. Everything
 * else is the default parser's work, its refusal of `__proto__` and `constructor` keys included.
 */
export function registerJsonBodyParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  // The API speaks JSON only: a text/plain body is a 415, not a string that fails validation.
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(request.headers['content-type'] ?? '')?.[1];
    const text = body as string;
    // ASCII reads the same in UTF-8, and some clients label ASCII JSON as US-ASCII or ISO-8859-1.
    if (charset !== undefined && !UTF8.test(charset) && !(ASCII_COMPATIBLE.test(charset) && ASCII_ONLY.test(text))) {
      done(new HttpProblem(415, 'unsupported_charset', `request bodies are UTF-8; charset=${charset.slice(0, 40)} is accepted only for ASCII text`), undefined);
      return;
    }
    parse(request, text, (error, value) => {
      if (error) return done(error, undefined);
      const duplicate = duplicateKeyOf(text);
      if (duplicate !== undefined) return done(new HttpProblem(400, 'duplicate_key', `the JSON body gives the key "${duplicate.slice(0, 100)}" more than once in one object`), undefined);
      done(null, value);
    });
  });
}

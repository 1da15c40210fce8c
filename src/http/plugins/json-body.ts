import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ValidationError } from '../../errors.js';

/** Deeper than any request we define (a batch item's context is 4 levels); deeper bodies are refused unparsed. */
export const MAX_JSON_DEPTH = 32;

/** The nesting depth of a JSON text, counted without parsing, so a hostile body costs one linear scan. */
export function jsonNestingDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i += 1;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      depth += 1;
      if (depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x7d || c === 0x5d) {
      depth -= 1;
    }
  }
  return max;
}

/**
 * RFC 8259 §8.1: JSON exchanged between systems is UTF-8. Decoding is strict: a lenient decoder turns each invalid
 * byte into U+FFFD, so two different bodies (a context value of byte 0xFF and one of 0xFE) would read the same.
 * The BOM is kept, so a body that starts with one is refused as before rather than read differently.
 */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses a raw body as JSON: strict UTF-8, a bounded depth, and fastify's secure parser (it refuses `__proto__` and
 * `constructor.prototype` keys). An empty body is `undefined`. Failures are 400 KH_ERR_VALIDATION. Synchronous,
 * through the callback, as fastify's body parsers are.
 */
export type JsonBufferParser = (request: FastifyRequest, body: Buffer, done: (error: Error | null, value?: unknown) => void) => void;

export function jsonBufferParser(app: FastifyInstance): JsonBufferParser {
  const parse = app.getDefaultJsonParser('error', 'error');
  return (request, body, done) => {
    let text: string;
    try {
      // parseAs 'buffer' hands over the raw bytes; fastify's own decoding would substitute U+FFFD.
      text = STRICT_UTF8.decode(body);
    } catch {
      done(new ValidationError('The request body is not valid UTF-8'));
      return;
    }
    // An empty body is no body: routes that need one say so in their schema; the others treat it as `{}`.
    if (text.length === 0) {
      done(null, undefined);
      return;
    }
    // Each level takes two characters, so a body this short cannot be too deep: most requests skip the scan.
    if (text.length > 2 * MAX_JSON_DEPTH && jsonNestingDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
      done(new ValidationError(`The request body is nested deeper than ${MAX_JSON_DEPTH} levels`));
      return;
    }
    parse(request, text, (error, value) => {
      if (error) done(new ValidationError('The request body is not valid JSON'));
      else done(null, value);
    });
  };
}

/** Replaces fastify's body parsers with {@link jsonBufferParser} for `application/json`. */
export function registerJsonBodyParser(app: FastifyInstance): void {
  const parse = jsonBufferParser(app);
  // JSON is the only body we take: everything else, text/plain included, is answered 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => parse(request, body as Buffer, done));
}

import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { DecryptionError } from '../../../src/errors.js';
import {
  canonicalContext,
  compareBytes,
  contextObject,
  MAX_CONTEXT_BYTES,
  MAX_CONTEXT_PAIRS,
  RESERVED_CONTEXT_PREFIX,
  type CanonicalContext,
} from '../../../src/format/encryption-context.js';
import {
  decodeHeader,
  encodeHeader,
  HEADER_PREFIX_BYTES,
  MAGIC,
  MAX_SEGMENT_SIZE,
  MAX_WRAPPED_KEY_BYTES,
  MIN_SEGMENT_SIZE,
  type HeaderFields,
} from '../../../src/format/header.js';
import { DEFAULT_SUITE, SUITE_AES256_GCM_HKDF_SHA256_COMMIT, type Suite } from '../../../src/format/suites.js';
import { open, openStream, pipeThrough, seal } from '../../helpers/envelope.js';
import { FakeDataKeySource } from '../../helpers/fake-source.js';

/**
 * Property tests of the header parser and of one-shot decryption. The rule under test is the one of
 * docs/envelope-format.md: whatever the bytes, a reader either parses a canonical header or refuses with the one
 * decryption error (RFC 7516 §11.5: no oracle), and a changed message never decrypts.
 *
 * Runs are few (a few hundred at most) so the file takes about a second; fast-check prints the seed of a failure
 * so it can be replayed.
 */

const SEGMENT = 256;
const PLAINTEXT = randomBytes(2 * SEGMENT + 77);

let source: FakeDataKeySource;
let message: Buffer;
let header: Buffer;
/** Offsets of the length and count fields of `header`: where a changed value moves every later field. */
let fieldOffsets: number[];

beforeAll(async () => {
  source = new FakeDataKeySource();
  message = Buffer.from(await seal(source, PLAINTEXT, { segmentSize: SEGMENT, context: { tenant: 'acme', region: 'eu-west-1', 'ключ': 'значение' } }));
  const parsed = decodeHeader(message);
  header = Buffer.from(parsed.bytes);
  // Format v2: the segment size follows the prefix, and the message id ends the header.
  const contextStart = HEADER_PREFIX_BYTES + 6 + parsed.wrappedKey.length;
  fieldOffsets = [5, 7, HEADER_PREFIX_BYTES, HEADER_PREFIX_BYTES + 2, HEADER_PREFIX_BYTES + 4, contextStart];
  let offset = contextStart + 2;
  for (let i = 0; i < 2 * parsed.context.pairs.length; i++) {
    fieldOffsets.push(offset);
    offset += 2 + header.readUInt16BE(offset);
  }
});

/** What `action` threw, or undefined. */
function thrown(action: () => unknown): unknown {
  try {
    action();
    return undefined;
  } catch (error) {
    return error;
  }
}

function expectOnlyDecryptionError(error: unknown): void {
  if (error === undefined) return;
  expect(error).toBeInstanceOf(DecryptionError);
  expect((error as Error).message).toBe('The message could not be decrypted');
}

type Mutation =
  | { readonly kind: 'flip'; readonly at: number; readonly mask: number }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly kind: 'remove'; readonly at: number; readonly count: number }
  | { readonly kind: 'u16'; readonly at: number; readonly value: number }
  | { readonly kind: 'field'; readonly field: number; readonly value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant('remove' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('u16' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 0xffff }) }),
  // Length and count fields, with values near the truth, where a parser is most likely to read out of bounds.
  fc.record({
    kind: fc.constant('field' as const),
    field: fc.nat(),
    value: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: -3, max: 3 })),
  }),
);

/** `bytes` with `mutations` applied in order; offsets wrap around the current length. */
function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Buffer {
  let out = Buffer.from(bytes);
  for (const change of mutations) {
    if (out.length === 0) break;
    switch (change.kind) {
      case 'flip': {
        out[change.at % out.length]! ^= change.mask;
        break;
      }
      case 'truncate':
        out = out.subarray(0, change.at % out.length);
        break;
      case 'insert': {
        const at = change.at % (out.length + 1);
        out = Buffer.concat([out.subarray(0, at), change.bytes, out.subarray(at)]);
        break;
      }
      case 'remove': {
        const at = change.at % out.length;
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + change.count)]);
        break;
      }
      case 'u16': {
        if (out.length < 2) break;
        out.writeUInt16BE(change.value, change.at % (out.length - 1));
        break;
      }
      case 'field': {
        const at = fieldOffsets[change.field % fieldOffsets.length]!;
        if (at + 2 > out.length) break;
        // Small values are taken as a change of the current value, large ones as the new value.
        const value = Math.abs(change.value) <= 3 ? (out.readUInt16BE(at) + change.value + 0x10000) % 0x10000 : change.value;
        out.writeUInt16BE(value, at);
        break;
      }
    }
  }
  return out;
}

const mutations = fc.array(mutation, { minLength: 1, maxLength: 4 });

/** A valid prefix of `suite` (its format version and id) declaring `length` bytes, then whatever. */
function withValidPrefix(suite: Suite, body: Uint8Array, length: number): Buffer {
  const out = Buffer.alloc(HEADER_PREFIX_BYTES + body.length);
  out.set(MAGIC, 0);
  out[4] = suite.formatVersion;
  out.writeUInt16BE(suite.id, 5);
  out.writeUInt16BE(length, 7);
  out.set(body, HEADER_PREFIX_BYTES);
  return out;
}

/** Every header `decodeHeader` accepts is the one encoding of its fields (docs/envelope-format.md: canonical). */
function expectCanonical(input: Uint8Array): void {
  const decoded = decodeHeader(input);
  const again = encodeHeader(decoded);
  expect(Buffer.from(again.bytes).equals(Buffer.from(input.subarray(0, decoded.bytes.length)))).toBe(true);
}

describe('decodeHeader returns a header or throws the decryption error, nothing else', () => {
  it('for any bytes at all', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        expectOnlyDecryptionError(thrown(() => decodeHeader(bytes)));
      }),
      { numRuns: 300 },
    );
  });

  for (const suite of [SUITE_AES256_GCM_HKDF_SHA256_COMMIT, DEFAULT_SUITE]) {
    it(`for any bytes behind a valid v${suite.formatVersion} prefix, whatever length it declares`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 0xffff }), (body, length) => {
          expectOnlyDecryptionError(thrown(() => decodeHeader(withValidPrefix(suite, body, length))));
        }),
        { numRuns: 300 },
      );
    });
  }

  it('refuses a suite under the other format version', () => {
    for (const [suite, version] of [[SUITE_AES256_GCM_HKDF_SHA256_COMMIT, 2], [DEFAULT_SUITE, 1]] as const) {
      const valid = Buffer.from(headerWith(canonicalContext({ tenant: 'a' }), suite));
      expect(decodeHeader(valid).suite).toBe(suite);
      valid[4] = version;
      expect(thrown(() => decodeHeader(valid))).toBeInstanceOf(DecryptionError);
    }
  });

  it('for a valid header with bytes flipped, cut, inserted, removed or overwritten', () => {
    fc.assert(
      fc.property(mutations, (changes) => {
        const input = mutate(header, changes);
        const error = thrown(() => decodeHeader(input));
        expectOnlyDecryptionError(error);
        // What is accepted is still canonical: one header, one encoding.
        if (error === undefined) expectCanonical(input);
      }),
      { numRuns: 500 },
    );
  });

  it('for every truncation of a valid header', () => {
    for (let length = 0; length < header.length; length++) {
      expect(thrown(() => decodeHeader(header.subarray(0, length)))).toBeInstanceOf(DecryptionError);
    }
  });
});

describe('one-shot decryption rejects only with the decryption error', () => {
  async function outcome(blob: Uint8Array): Promise<{ plaintext?: Uint8Array; error?: unknown }> {
    try {
      return { plaintext: await open(source, blob) };
    } catch (error) {
      return { error };
    }
  }

  it('for any bytes at all', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 1_000 }), async (bytes) => {
        const result = await outcome(bytes);
        expect(result.error).toBeInstanceOf(DecryptionError);
      }),
      { numRuns: 150 },
    );
  });

  it('for a valid header followed by any bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 1_000 }), async (body) => {
        const result = await outcome(Buffer.concat([header, body]));
        expect(result.error).toBeInstanceOf(DecryptionError);
      }),
      { numRuns: 150 },
    );
  });

  it('for a valid message with any change: a changed message never decrypts, an unchanged one decrypts to its plaintext', async () => {
    await fc.assert(
      fc.asyncProperty(mutations, async (changes) => {
        const blob = mutate(message, changes);
        const result = await outcome(blob);
        if (blob.equals(message)) {
          expect(result.error).toBeUndefined();
          expect(Buffer.from(result.plaintext!).equals(PLAINTEXT)).toBe(true);
        } else {
          expect(result.error).toBeInstanceOf(DecryptionError);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('the unchanged message decrypts to its plaintext', async () => {
    expect(Buffer.from(await open(source, message)).equals(PLAINTEXT)).toBe(true);
  });

  it('the decrypting stream, for a changed message, errors only with the decryption error after releasing only authentic plaintext', async () => {
    await fc.assert(
      fc.asyncProperty(mutations, fc.integer({ min: 1, max: 700 }), async (changes, chunkSize) => {
        const blob = mutate(message, changes);
        fc.pre(!blob.equals(message));
        const result = await pipeThrough(openStream(source), blob, chunkSize);
        expect(result.error).toBeInstanceOf(DecryptionError);
        // Only whole segments that authenticated, and never the last one, which could be a truncation.
        expect(result.output.length % SEGMENT).toBe(0);
        expect(result.output.length).toBeLessThan(PLAINTEXT.length);
        expect(Buffer.from(result.output).equals(PLAINTEXT.subarray(0, result.output.length))).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});

/** A context key: any well-formed Unicode, not empty, not under the reserved prefix. */
const contextKey = fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }).filter((key) => !key.startsWith(RESERVED_CONTEXT_PREFIX));
const contextValue = fc.string({ unit: 'binary', maxLength: 24 });
const encodedSize = (entries: ReadonlyArray<readonly [string, string]>): number =>
  entries.reduce((size, [key, value]) => size + 4 + Buffer.byteLength(key) + Buffer.byteLength(value), 2);
/** The pairs of a context within the limits of docs/envelope-format.md: 64 pairs, 8,192 encoded bytes. */
const contextEntries = fc
  .uniqueArray(fc.tuple(contextKey, contextValue), { selector: ([key]) => key, maxLength: MAX_CONTEXT_PAIRS })
  .filter((entries) => encodedSize(entries) <= MAX_CONTEXT_BYTES);

const headerFields: fc.Arbitrary<{ fields: HeaderFields; entries: Array<[string, string]> }> = fc
  .record({
    messageId: fc.uint8Array({ minLength: DEFAULT_SUITE.messageIdBytes, maxLength: DEFAULT_SUITE.messageIdBytes }),
    segmentSize: fc.oneof(fc.integer({ min: MIN_SEGMENT_SIZE, max: MAX_SEGMENT_SIZE }), fc.constantFrom(MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE)),
    wrappedKey: fc.uint8Array({ minLength: 1, maxLength: MAX_WRAPPED_KEY_BYTES }),
    commitment: fc.uint8Array({ minLength: DEFAULT_SUITE.commitmentBytes, maxLength: DEFAULT_SUITE.commitmentBytes }),
    entries: contextEntries,
  })
  .map(({ entries, ...rest }) => ({
    fields: { ...rest, suite: DEFAULT_SUITE, context: canonicalContext(Object.fromEntries(entries)) },
    entries,
  }));

describe('encodeHeader and decodeHeader', () => {
  it('round-trip any valid fields, contexts of any Unicode included', () => {
    fc.assert(
      fc.property(headerFields, fc.uint8Array({ maxLength: 64 }), ({ fields, entries }, trailing) => {
        const encoded = encodeHeader(fields);
        const decoded = decodeHeader(Buffer.concat([encoded.bytes, trailing]));
        expect(decoded.suite).toBe(DEFAULT_SUITE);
        expect(Buffer.from(decoded.messageId).equals(Buffer.from(fields.messageId))).toBe(true);
        expect(decoded.segmentSize).toBe(fields.segmentSize);
        expect(Buffer.from(decoded.wrappedKey).equals(Buffer.from(fields.wrappedKey))).toBe(true);
        expect(Buffer.from(decoded.commitment).equals(Buffer.from(fields.commitment))).toBe(true);
        expect(Buffer.from(decoded.bytes).equals(Buffer.from(encoded.bytes))).toBe(true);
        expect(decoded.context.pairs).toEqual(fields.context.pairs);
        expect(Buffer.from(decoded.context.encoded).equals(Buffer.from(fields.context.encoded))).toBe(true);
        // The cache partitions by `key`, so a parsed context must have the key the writer's context had.
        expect(decoded.context.key).toBe(fields.context.key);
        expect(contextObject(decoded.context)).toEqual(Object.fromEntries(entries));
      }),
      { numRuns: 200 },
    );
  });

  it('parse a copy: changing the input afterwards changes nothing parsed', () => {
    fc.assert(
      fc.property(headerFields, ({ fields }) => {
        const input = Buffer.concat([randomBytes(5), encodeHeader(fields).bytes]).subarray(5);
        const decoded = decodeHeader(input);
        const before = Buffer.from(decoded.bytes);
        const pairs = JSON.stringify(decoded.context.pairs);
        input.fill(0xa5);
        expect(Buffer.from(decoded.bytes).equals(before)).toBe(true);
        expect(Buffer.from(decoded.wrappedKey).equals(Buffer.from(fields.wrappedKey))).toBe(true);
        expect(JSON.stringify(decoded.context.pairs)).toBe(pairs);
        expect(decoded.context.key).toBe(fields.context.key);
      }),
      { numRuns: 100 },
    );
  });

  it('write the context sorted by the UTF-8 bytes of its keys', () => {
    fc.assert(
      fc.property(headerFields, ({ fields }) => {
        const names = decodeHeader(encodeHeader(fields).bytes).context.pairs.map(([name]) => Buffer.from(name, 'utf8'));
        for (let i = 1; i < names.length; i++) expect(compareBytes(names[i - 1]!, names[i]!)).toBeLessThan(0);
      }),
      { numRuns: 100 },
    );
  });
});

/** The canonical encoding of pairs given as they are, without canonicalContext's checks: for writing bad headers. */
function rawContext(pairs: ReadonlyArray<readonly [string, string]>): CanonicalContext {
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0]!.writeUInt16BE(pairs.length);
  for (const [name, value] of pairs) {
    for (const text of [name, value]) {
      const bytes = Buffer.from(text, 'utf8');
      const length = Buffer.alloc(2);
      length.writeUInt16BE(bytes.length);
      parts.push(length, bytes);
    }
  }
  return { pairs, encoded: Buffer.concat(parts), key: JSON.stringify(pairs) };
}

function headerWith(context: CanonicalContext, suite: Suite = DEFAULT_SUITE): Uint8Array {
  return encodeHeader({
    suite,
    messageId: new Uint8Array(suite.messageIdBytes),
    segmentSize: SEGMENT,
    wrappedKey: new Uint8Array(77),
    context,
    commitment: new Uint8Array(suite.commitmentBytes),
  }).bytes;
}

describe('decodeHeader refuses a context over the limits of docs/envelope-format.md', () => {
  it('more than 64 pairs', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX_CONTEXT_PAIRS + 1, max: 200 }), (count) => {
        const pairs = Array.from({ length: count }, (_, i) => [`k${String(i).padStart(3, '0')}`, 'v'] as const);
        expect(thrown(() => decodeHeader(headerWith(rawContext(pairs))))).toBeInstanceOf(DecryptionError);
      }),
      { numRuns: 20 },
    );
  });

  it('more than 8,192 encoded bytes', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX_CONTEXT_BYTES + 1, max: 20_000 }), (size) => {
        // One pair: 2 (count) + 2 + 1 (key "k") + 2 + value.
        const pairs = [['k', 'v'.repeat(size - 7)] as const];
        expect(rawContext(pairs).encoded.length).toBe(size);
        expect(thrown(() => decodeHeader(headerWith(rawContext(pairs))))).toBeInstanceOf(DecryptionError);
      }),
      { numRuns: 20 },
    );
  });

  it('exactly 64 pairs and exactly 8,192 bytes are accepted', () => {
    const many = Array.from({ length: MAX_CONTEXT_PAIRS }, (_, i) => [`k${String(i).padStart(3, '0')}`, 'v'] as const);
    expect(decodeHeader(headerWith(rawContext(many))).context.pairs).toHaveLength(MAX_CONTEXT_PAIRS);
    const large = [['k', 'v'.repeat(MAX_CONTEXT_BYTES - 7)] as const];
    expect(decodeHeader(headerWith(rawContext(large))).context.encoded.length).toBe(MAX_CONTEXT_BYTES);
  });
});

describe('canonicalContext', () => {
  const entriesWithShuffle = contextEntries.chain((entries) =>
    fc.tuple(fc.constant(entries), fc.shuffledSubarray(entries, { minLength: entries.length, maxLength: entries.length })),
  );

  it('does not depend on the order of the pairs', () => {
    fc.assert(
      fc.property(entriesWithShuffle, ([entries, shuffled]) => {
        const a = canonicalContext(Object.fromEntries(entries));
        const b = canonicalContext(Object.fromEntries(shuffled));
        expect(Buffer.from(b.encoded).equals(Buffer.from(a.encoded))).toBe(true);
        expect(b.key).toBe(a.key);
        expect(b.pairs).toEqual(a.pairs);
      }),
      { numRuns: 200 },
    );
  });

  it('gives different contexts different encodings and keys', () => {
    fc.assert(
      fc.property(contextEntries, contextEntries, (x, y) => {
        const a = canonicalContext(Object.fromEntries(x));
        const b = canonicalContext(Object.fromEntries(y));
        const byKey = (entries: Array<[string, string]>) => JSON.stringify([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
        const equal = byKey(x) === byKey(y);
        expect(Buffer.from(a.encoded).equals(Buffer.from(b.encoded))).toBe(equal);
        expect(a.key === b.key).toBe(equal);
      }),
      { numRuns: 200 },
    );
  });
});

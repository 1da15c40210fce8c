import { InvalidArgumentError } from '../errors.js';

/** String-to-string pairs bound to a message as authenticated data. The service binds them to the data key too. */
export type EncryptionContext = Readonly<Record<string, string>>;

/** The same limits as the service, so a context the SDK accepts is never refused there. */
export const MAX_CONTEXT_PAIRS = 64;
/** See {@link MAX_CONTEXT_PAIRS}. */
export const MAX_CONTEXT_BYTES = 8192;
/** The service sets keys under this prefix from the caller's identity; callers may not. */
export const RESERVED_CONTEXT_PREFIX = 'kh.';

/** A context checked once and encoded canonically; `key` identifies it in cache partitions. */
export interface CanonicalContext {
  readonly pairs: ReadonlyArray<readonly [string, string]>;
  /** u16 pair count, then per pair (sorted by the key's UTF-8 bytes) u16 length + key, u16 length + value. */
  readonly encoded: Uint8Array;
  /** A string that equals another context's exactly when the contexts are equal. */
  readonly key: string;
}

const encoder = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const EMPTY: CanonicalContext = Object.freeze({ pairs: Object.freeze([]), encoded: new Uint8Array(2), key: '' });

/** Orders byte strings as the canonical encoding sorts context keys. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/**
 * Checks a caller's context and encodes it canonically. A lone surrogate has no UTF-8 form, so two distinct contexts
 * would encode alike; such a context is refused rather than silently mapped to U+FFFD.
 */
export function canonicalContext(context: EncryptionContext | undefined): CanonicalContext {
  if (context === undefined || context === null) return EMPTY;
  if (typeof context !== 'object' || Array.isArray(context)) throw new InvalidArgumentError('context must be an object of strings');
  // A frozen context cannot change, so the object itself names its encoding: no JSON needed to look it up.
  const frozen = Object.isFrozen(context);
  if (frozen) {
    const known = frozenMemo.get(context);
    if (known !== undefined) return known;
  }
  const canonical = checkedContext(context);
  if (frozen) frozenMemo.set(context, canonical);
  return canonical;
}

/** Canonical encodings of frozen contexts, by identity; entries go with their objects. */
const frozenMemo = new WeakMap<EncryptionContext, CanonicalContext>();

function checkedContext(context: EncryptionContext): CanonicalContext {
  const names = Object.keys(context);
  if (names.length === 0) return EMPTY;
  if (names.length > MAX_CONTEXT_PAIRS) throw new InvalidArgumentError(`context has more than ${MAX_CONTEXT_PAIRS} pairs`);
  // Applications pass the same few contexts again and again. Once every value is known to be a string, the JSON of
  // the object names it exactly (JSON drops only undefined values and functions), so it can key a memo.
  for (const name of names) {
    if (typeof context[name] !== 'string') throw new InvalidArgumentError('context values must be strings');
  }
  const memoKey = JSON.stringify(context);
  const memoised = memo.get(memoKey);
  if (memoised !== undefined) return memoised;
  const computed = encodeContext(context, names);
  if (memo.size >= MAX_MEMOISED_CONTEXTS) memo.delete(memo.keys().next().value as string);
  memo.set(memoKey, computed);
  return computed;
}

const MAX_MEMOISED_CONTEXTS = 256;
const memo = new Map<string, CanonicalContext>();

function encodeContext(context: EncryptionContext, names: string[]): CanonicalContext {
  const entries: Array<{ name: string; value: string; nameBytes: Uint8Array; valueBytes: Uint8Array }> = [];
  let size = 2;
  for (const name of names) {
    const value: unknown = context[name];
    if (typeof value !== 'string') throw new InvalidArgumentError('context values must be strings');
    if (name.startsWith(RESERVED_CONTEXT_PREFIX)) throw new InvalidArgumentError(`context keys starting with "${RESERVED_CONTEXT_PREFIX}" are reserved`);
    if (LONE_SURROGATE.test(name) || LONE_SURROGATE.test(value)) throw new InvalidArgumentError('context keys and values must be well-formed Unicode');
    const nameBytes = encoder.encode(name);
    const valueBytes = encoder.encode(value);
    if (nameBytes.length === 0) throw new InvalidArgumentError('context keys must not be empty');
    size += 4 + nameBytes.length + valueBytes.length;
    entries.push({ name, value, nameBytes, valueBytes });
  }
  if (size > MAX_CONTEXT_BYTES) throw new InvalidArgumentError(`context is larger than ${MAX_CONTEXT_BYTES} bytes encoded`);
  entries.sort((a, b) => compareBytes(a.nameBytes, b.nameBytes));
  const encoded = new Uint8Array(size);
  const view = new DataView(encoded.buffer);
  view.setUint16(0, entries.length);
  let offset = 2;
  for (const entry of entries) {
    view.setUint16(offset, entry.nameBytes.length);
    encoded.set(entry.nameBytes, offset + 2);
    offset += 2 + entry.nameBytes.length;
    view.setUint16(offset, entry.valueBytes.length);
    encoded.set(entry.valueBytes, offset + 2);
    offset += 2 + entry.valueBytes.length;
  }
  const pairs = Object.freeze(entries.map((entry) => Object.freeze([entry.name, entry.value] as const)));
  return Object.freeze({ pairs, encoded, key: JSON.stringify(pairs) });
}

/** The context as a plain frozen object, for the service's JSON API and for callers. */
export function contextObject(context: CanonicalContext): EncryptionContext {
  return Object.freeze(Object.fromEntries(context.pairs));
}

/** True when every pair of `expected` is in `actual` with the same value. */
export function contextIncludes(actual: CanonicalContext, expected: CanonicalContext): boolean {
  // The usual case, the very context the message was written with: equal encodings, compared without a scan.
  if (equalBytes(actual.encoded, expected.encoded)) return true;
  // At most 64 pairs a side, so a scan beats building a map on every decryption.
  for (const [name, value] of expected.pairs) {
    let found = false;
    for (const [actualName, actualValue] of actual.pairs) {
      if (actualName === name) {
        found = actualValue === value;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

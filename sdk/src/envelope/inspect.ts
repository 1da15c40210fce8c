import { DecryptionError, InvalidArgumentError } from '../errors.js';
import { contextObject, type EncryptionContext } from '../format/encryption-context.js';
import { decodeHeader } from '../format/header.js';
import { wrappedKeyRef } from '../keys/wrapped-key.js';

/**
 * What a message's header says, read without decrypting anything or calling the service. None of it is authenticated
 * until the message is decrypted: use it to find messages (those under a revoked key version, say), never to trust
 * them.
 */
export interface MessageInfo {
  /** The id (UUID) of the service key whose version wrapped the data key. The header names keys by id, not by name. */
  readonly keyId: string;
  /** The key version that wrapped the data key. */
  readonly keyVersion: number;
  /** The encryption context, in the clear in the header. */
  readonly context: EncryptionContext;
  /** The suite id: `0x0002` for format v2 (what the SDK writes), `0x0001` for format v1 (docs/envelope-format.md). */
  readonly suiteId: number;
  /** Plaintext bytes per segment. */
  readonly segmentSize: number;
  /** The header's length in bytes: the prefix of the message that `inspectMessage` needs. */
  readonly headerLength: number;
}

/**
 * Reads the header of a message (or of any prefix of it that holds the whole header). A header that does not parse,
 * or whose wrapped data key is not a `kh1` ciphertext, is the one decryption error.
 */
export function inspectMessage(message: Uint8Array): MessageInfo {
  if (!(message instanceof Uint8Array)) throw new InvalidArgumentError('message must be a Uint8Array or a Buffer');
  const header = decodeHeader(message);
  const wrapped = wrappedKeyRef(header.wrappedKey);
  if (wrapped === undefined) throw new DecryptionError();
  return Object.freeze({
    keyId: wrapped.keyId,
    keyVersion: wrapped.keyVersion,
    context: contextObject(header.context),
    suiteId: header.suite.id,
    segmentSize: header.segmentSize,
    headerLength: header.bytes.length,
  });
}

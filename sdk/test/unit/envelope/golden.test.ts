import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { nodeBackend } from '../../../src/crypto/node-backend.js';
import { deriveMessageKeys } from '../../../src/envelope/message-cipher.js';
import { decryptMessage, encryptMessage, startMessage } from '../../../src/envelope/one-shot.js';
import { DecryptionError } from '../../../src/errors.js';
import { canonicalContext } from '../../../src/format/encryption-context.js';
import { suiteById } from '../../../src/format/suites.js';
import { BACKENDS } from '../../helpers/envelope.js';

interface Vector {
  name: string;
  suiteId: number;
  segmentSize: number;
  context: Record<string, string>;
  contextEncoding: string;
  dataKey: string;
  wrappedKey: string;
  messageId: string;
  contentKey: string;
  commitment: string;
  plaintext: string;
  message: string;
}

const { vectors } = JSON.parse(readFileSync(new URL('../../fixtures/envelope-v1.json', import.meta.url), 'utf8')) as { vectors: Vector[] };
const hex = (value: string) => Buffer.from(value, 'hex');

/** The decryptor under test maps the vector's opaque wrapped key to its data key, as the service would. */
function unwrapFor(vector: Vector) {
  return async (header: { wrappedKey: Uint8Array }) => {
    if (!Buffer.from(header.wrappedKey).equals(hex(vector.wrappedKey))) throw new DecryptionError();
    return Buffer.from(hex(vector.dataKey));
  };
}

describe('format v1 golden vectors (sdk/test/fixtures/envelope-v1.json)', () => {
  it('has vectors', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(4);
  });

  for (const vector of vectors) {
    describe(vector.name, () => {
      it('the context encodes canonically to the recorded bytes', () => {
        expect(Buffer.from(canonicalContext(vector.context).encoded).toString('hex')).toBe(vector.contextEncoding);
      });

      it('HKDF derives the recorded content key and commitment', async () => {
        const { contentKey, commitment } = await deriveMessageKeys(nodeBackend, suiteById(vector.suiteId)!, hex(vector.dataKey), hex(vector.messageId));
        expect(Buffer.from(contentKey).toString('hex')).toBe(vector.contentKey);
        expect(Buffer.from(commitment).toString('hex')).toBe(vector.commitment);
      });

      for (const [name, backend] of BACKENDS) {
        it(`decrypts to the recorded plaintext (${name})`, async () => {
          const { plaintext, header } = await decryptMessage(backend, hex(vector.message), unwrapFor(vector), undefined);
          expect(Buffer.from(plaintext).toString('hex')).toBe(vector.plaintext);
          expect(header.suite.id).toBe(vector.suiteId);
          expect(header.segmentSize).toBe(vector.segmentSize);
        });
      }

      it('encrypting again with the same message id gives the same bytes', async () => {
        const backend = { ...nodeBackend, randomBytes: () => hex(vector.messageId) };
        const message = await startMessage(
          backend,
          { keyName: 'golden', keyId: '00000000-0000-0000-0000-000000000000', keyVersion: 1, wrapped: hex(vector.wrappedKey), plaintext: hex(vector.dataKey) },
          { suite: suiteById(vector.suiteId)!, segmentSize: vector.segmentSize, context: canonicalContext(vector.context) },
        );
        expect(Buffer.from(await encryptMessage(message, hex(vector.plaintext))).toString('hex')).toBe(vector.message);
      });
    });
  }
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { nodeBackend } from '../../../src/crypto/node-backend.js';
import { DataKeyMaterial } from '../../../src/envelope/data-key-material.js';
import { deriveMessageKeys } from '../../../src/envelope/message-cipher.js';
import { decryptMessage, encryptMessage, sealMessageSync, startMessage } from '../../../src/envelope/one-shot.js';
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
  /** Format v2 only: the first half of the per-data-key HKDF. */
  derivationKey?: string;
  contentKey: string;
  commitment: string;
  plaintext: string;
  message: string;
}

const hex = (value: string) => Buffer.from(value, 'hex');
const vectorsOf = (file: string) => (JSON.parse(readFileSync(new URL(`../../fixtures/${file}`, import.meta.url), 'utf8')) as { vectors: Vector[] }).vectors;

/** The decryptor under test maps the vector's opaque wrapped key to its data key, as the service would. */
function unwrapFor(vector: Vector) {
  return async (header: { wrappedKey: Uint8Array }) => {
    if (!Buffer.from(header.wrappedKey).equals(hex(vector.wrappedKey))) throw new DecryptionError();
    return Buffer.from(hex(vector.dataKey));
  };
}

function dataKeyOf(vector: Vector) {
  return { keyName: 'golden', keyId: '00000000-0000-0000-0000-000000000000', keyVersion: 1, wrapped: hex(vector.wrappedKey), plaintext: hex(vector.dataKey) };
}

/** The content key and commitment the SDK derives for the vector's data key and message id. */
async function derived(vector: Vector): Promise<{ contentKey: Uint8Array; commitment: Uint8Array }> {
  const suite = suiteById(vector.suiteId)!;
  if (suite.derivation === 'per-message-hkdf') return deriveMessageKeys(nodeBackend, suite, hex(vector.dataKey), hex(vector.messageId));
  const material = DataKeyMaterial.fromSync(nodeBackend.sync!, suite, hex(vector.dataKey));
  return { contentKey: material.contentKeySync(hex(vector.messageId)), commitment: material.commitment };
}

for (const [version, file] of [[1, 'envelope-v1.json'], [2, 'envelope-v2.json']] as const) {
  const vectors = vectorsOf(file);

  describe(`format v${version} golden vectors (sdk/test/fixtures/${file})`, () => {
    it('has vectors of this version', () => {
      expect(vectors.length).toBeGreaterThanOrEqual(4);
      for (const vector of vectors) expect(suiteById(vector.suiteId)?.formatVersion).toBe(version);
    });

    for (const vector of vectors) {
      describe(vector.name, () => {
        it('the context encodes canonically to the recorded bytes', () => {
          expect(Buffer.from(canonicalContext(vector.context).encoded).toString('hex')).toBe(vector.contextEncoding);
        });

        it('the derivation gives the recorded content key and commitment', async () => {
          const { contentKey, commitment } = await derived(vector);
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

          it(`encrypting again with the same message id gives the same bytes (${name})`, async () => {
            const fixed = { ...backend, randomBytes: () => hex(vector.messageId) };
            const message = await startMessage(fixed, dataKeyOf(vector), {
              suite: suiteById(vector.suiteId)!,
              segmentSize: vector.segmentSize,
              context: canonicalContext(vector.context),
            });
            expect(Buffer.from(await encryptMessage(message, hex(vector.plaintext))).toString('hex')).toBe(vector.message);
          });
        }

        if (version === 2) {
          it('the synchronous path (a cached data key on node:crypto) writes the same bytes', () => {
            const fixed = { ...nodeBackend, randomBytes: () => hex(vector.messageId) };
            const parameters = { suite: suiteById(vector.suiteId)!, segmentSize: vector.segmentSize, context: canonicalContext(vector.context) };
            expect(Buffer.from(sealMessageSync(fixed, dataKeyOf(vector), parameters, hex(vector.plaintext))).toString('hex')).toBe(vector.message);
          });
        }
      });
    }
  });
}

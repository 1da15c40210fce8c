import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Services } from '../../services.js';
import type { ErrorCode } from '../../errors.js';
import { AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, json, KeyNameParams, problems, ref } from '../schemas/common.js';
import { keyStateRefusals, versionReadRefusals } from '../schemas/keys.js';
import {
  CiphertextResult,
  DataKeyBody,
  DataKeyResult,
  DecryptBody,
  DecryptResult,
  EncryptBody,
  RewrapBody,
  RewrapRevokedBody,
} from '../schemas/crypto.js';
import { defaultEmptyBody } from '../plugins/empty-body.js';
import { dataKeyView, decryptView } from '../views.js';

const tags = ['crypto'];

/** What any of these may answer: a policy's refusal, a bound-context mismatch (403) or a reserved context key (400). */
const COMMON: readonly ErrorCode[] = [...AUTHENTICATED_PROBLEMS, ...BODY_PROBLEMS, 'KH_ERR_FORBIDDEN'];

/** The primary version a ciphertext is sealed under must be enabled (lifecycle.ts `checkPrimaryVersionEnabled`). */
const PRIMARY_VERSION_REFUSALS: readonly ErrorCode[] = ['KH_ERR_KEY_VERSION_DISABLED', 'KH_ERR_KEY_VERSION_DESTROYED'];

/** Sealing under a key named in the URL (envelope-service.ts `#withPrimary`): it must exist and be able to encrypt. */
const SEAL: readonly ErrorCode[] = ['KH_ERR_KEY_NOT_FOUND', ...keyStateRefusals('encrypt'), ...PRIMARY_VERSION_REFUSALS];

/**
 * Opening a ciphertext (envelope-service.ts `#withSource`): a ciphertext of no key, of a key the caller may never
 * use, or of a version the key never had fails as decryption does, never as 404; then the key and version rules.
 */
const OPEN: readonly ErrorCode[] = ['KH_ERR_DECRYPTION_FAILED', ...keyStateRefusals('decrypt'), ...versionReadRefusals('decrypt')];

/** Rewrap-revoked reads any version with material of the URL's key and seals under its primary. */
const REWRAP_REVOKED: readonly ErrorCode[] = [
  'KH_ERR_DECRYPTION_FAILED',
  ...keyStateRefusals('rewrap-revoked'),
  ...versionReadRefusals('rewrap-revoked'),
  ...PRIMARY_VERSION_REFUSALS,
];

/** Data keys, encrypt, decrypt, rewrap and the migration of revoked versions. */
export function cryptoRoutes(services: Pick<Services, 'envelope'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { envelope } = services;

    app.post('/v1/keys/:name/datakey', {
      preValidation: defaultEmptyBody,
      schema: {
        operationId: 'generateDataKey',
        summary: 'Issue a data key: its plaintext (unless includePlaintext is false) and its wrapped form.',
        tags,
        params: KeyNameParams,
        body: DataKeyBody,
        response: { 200: json(ref(DataKeyResult), 'The data key.'), ...problems(COMMON, SEAL) },
      },
    }, async (request) => dataKeyView(await envelope.generateDataKey(request.caller, request.params.name, request.body)));

    app.post('/v1/keys/:name/encrypt', {
      schema: {
        operationId: 'encrypt',
        summary: 'Encrypt a small secret (at most 4096 bytes) under the primary version.',
        tags,
        params: KeyNameParams,
        body: EncryptBody,
        response: { 200: json(ref(CiphertextResult), 'The ciphertext.'), ...problems(COMMON, SEAL) },
      },
    }, async (request) =>
      envelope.encrypt(request.caller, request.params.name, {
        plaintext: Buffer.from(request.body.plaintext, 'base64'),
        context: request.body.context,
      }),
    );

    app.post('/v1/decrypt', {
      schema: {
        operationId: 'decrypt',
        summary: 'Decrypt a ciphertext with the key it names.',
        tags,
        body: DecryptBody,
        response: { 200: json(ref(DecryptResult), 'The plaintext.'), ...problems(COMMON, OPEN) },
      },
    }, async (request) => decryptView(await envelope.decrypt(request.caller, request.body)));

    app.post('/v1/keys/:name/decrypt', {
      schema: {
        operationId: 'decryptWithKey',
        summary: 'Decrypt, refusing a ciphertext of any other key.',
        tags,
        params: KeyNameParams,
        body: DecryptBody,
        response: { 200: json(ref(DecryptResult), 'The plaintext.'), ...problems(COMMON, OPEN) },
      },
    }, async (request) => decryptView(await envelope.decrypt(request.caller, { ...request.body, keyName: request.params.name })));

    app.post('/v1/keys/:name/rewrap', {
      schema: {
        operationId: 'rewrap',
        summary: 'Re-encrypt a ciphertext, of this or another key, under the primary version of this key.',
        tags,
        params: KeyNameParams,
        body: RewrapBody,
        response: { 200: json(ref(CiphertextResult), 'The new ciphertext.'), ...problems(COMMON, OPEN, SEAL) },
      },
    }, async (request) => envelope.rewrap(request.caller, request.params.name, request.body));

    app.post('/v1/keys/:name/rewrap-revoked', {
      schema: {
        operationId: 'rewrapRevoked',
        summary:
          'Move a ciphertext of this key, under any version that still has material (disabled or below the minimum ' +
          'included), to its primary version with the same context. Needs the rewrap-revoked action, which "*" never grants.',
        tags,
        params: KeyNameParams,
        body: RewrapRevokedBody,
        response: { 200: json(ref(CiphertextResult), 'The new ciphertext, under the primary version.'), ...problems(COMMON, REWRAP_REVOKED) },
      },
    }, async (request) => envelope.rewrapRevoked(request.caller, request.params.name, request.body));
  };
}

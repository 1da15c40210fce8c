import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compactVerify, errors, type JSONWebKeySet, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { KUBERNETES_ALGORITHMS } from '../../../src/identity/auth-config.js';
import { AuthenticationFailedError } from '../../../src/identity/authenticator.js';
import { localKeyResolver, SAFE_KID } from '../../../src/identity/jwks.js';

// ---------------------------------------------------------------------------------------------------------------
// Project Wycheproof JSON Web Signature vectors, read from the pinned shared copy (see its PROVENANCE.md and
// SHA256SUMS); never copied here. Each vector runs through the JWS layer the Kubernetes authenticator uses: key
// selection from a configured key set by `alg` and `kid` only (localKeyResolver), a `kid` checked against SAFE_KID,
// and jose's compact verification restricted to the algorithms an issuer may be configured with.

interface WycheproofJwsTest {
  readonly tcId: number;
  readonly comment: string;
  readonly jws: string;
  readonly result: 'valid' | 'invalid';
  readonly flags: readonly string[];
}

interface WycheproofJwsGroup {
  readonly comment: string;
  readonly public?: JWK;
  readonly private?: JWK;
  readonly tests: readonly WycheproofJwsTest[];
}

interface WycheproofJwsFile {
  readonly numberOfTests: number;
  readonly testGroups: readonly WycheproofJwsGroup[];
}

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const VECTORS_DIR = resolve(REPO_ROOT, '../shared/vectors/wycheproof');
const VECTORS_PATH = resolve(VECTORS_DIR, 'json_web_signature_test.json');
const vectorsPresent = existsSync(VECTORS_PATH);
if (!vectorsPresent) {
  console.warn(`Skipping the Wycheproof JWS vectors: ${VECTORS_PATH} does not exist (they are not copied into the repo).`);
}

const fileBytes = vectorsPresent ? readFileSync(VECTORS_PATH) : undefined;
const vectorFile: WycheproofJwsFile | undefined = fileBytes === undefined ? undefined : JSON.parse(fileBytes.toString('utf8'));
const CONFIGURABLE: readonly string[] = KUBERNETES_ALGORITHMS;

type Expectation = 'verifies' | 'refused';

interface Vector extends WycheproofJwsTest {
  readonly group: string;
  /** The public keys an issuer would publish: the group's public key, or none for symmetric-only groups. */
  readonly jwks: JSONWebKeySet;
  readonly expectation: Expectation;
  /** Why the expectation differs from Wycheproof's verdict, if it does. */
  readonly note: string;
}

/**
 * Groups whose key is for RS256, ES256 or EdDSA (or names no algorithm) are in scope: Wycheproof's verdict stands.
 * Groups for other algorithms (PS256, RS384, ES512, HS256, …) are out of scope: an issuer can never be configured
 * for them, so even their valid vectors must be refused.
 */
const vectors: Vector[] = (vectorFile?.testGroups ?? []).flatMap((group) => {
  const jwks: JSONWebKeySet = { keys: group.public === undefined ? [] : [group.public] };
  const keyAlg = group.public?.alg;
  const inScope = group.public !== undefined && (keyAlg === undefined || CONFIGURABLE.includes(keyAlg));
  return group.tests.map((test): Vector => ({
    ...test,
    group: group.comment,
    jwks,
    expectation: inScope && test.result === 'valid' ? 'verifies' : 'refused',
    note: inScope ? '' : ` (${keyAlg ?? 'symmetric key'}: not a configurable algorithm)`,
  }));
});

/** Verifies the way KubernetesAuthenticator does, minus the claims: throws on anything it would refuse. */
async function verifyAsTheAuthenticatorDoes(vector: Vector): Promise<void> {
  const keyFor = localKeyResolver(vector.jwks);
  await compactVerify(
    vector.jws,
    (header) => {
      const { alg, kid } = header;
      if (kid !== undefined && (typeof kid !== 'string' || !SAFE_KID.test(kid))) {
        throw new AuthenticationFailedError('unknown-key');
      }
      return keyFor({ alg: alg as string, kid });
    },
    { algorithms: [...KUBERNETES_ALGORITHMS] },
  );
}

async function outcomeOf(vector: Vector): Promise<Expectation | Error> {
  try {
    await verifyAsTheAuthenticatorDoes(vector);
    return 'verifies';
  } catch (error) {
    return error as Error;
  }
}

const inScope = vectors.filter((vector) => vector.note === '');
const outOfScope = vectors.filter((vector) => vector.note !== '');

describe.skipIf(!vectorsPresent)('Wycheproof JSON Web Signature vectors', () => {
  it('is the pinned file (SHA256SUMS)', () => {
    const sums = readFileSync(resolve(VECTORS_DIR, 'SHA256SUMS'), 'utf8');
    const pinned = /^([0-9a-f]{64})\s+json_web_signature_test\.json$/m.exec(sums)?.[1];
    expect(createHash('sha256').update(fileBytes!).digest('hex')).toBe(pinned);
  });

  it('runs every vector in the file, in scope or not', () => {
    expect(vectors).toHaveLength(vectorFile!.numberOfTests);
    console.info(
      `Wycheproof JWS: ${vectors.length} vectors run; ${inScope.length} in scope ` +
        `(${inScope.filter((v) => v.expectation === 'verifies').length} must verify, ` +
        `${inScope.filter((v) => v.expectation === 'refused').length} must be refused); ` +
        `${outOfScope.length} for other algorithms, all must be refused ` +
        `(${outOfScope.filter((v) => v.result === 'valid').length} of them valid for their own algorithm).`,
    );
  });

  it('has in-scope vectors of both kinds, for RS256 and ES256', () => {
    const algs = new Set(inScope.flatMap((vector) => vector.jwks.keys.map((key) => key.alg)));
    expect(algs).toEqual(new Set(['RS256', 'ES256', undefined]));
    expect(inScope.some((vector) => vector.expectation === 'verifies')).toBe(true);
    expect(inScope.some((vector) => vector.expectation === 'refused')).toBe(true);
  });

  it.each(vectors.map((vector) => [`tcId ${vector.tcId} ${vector.group}/${vector.comment}${vector.note}`, vector] as const))(
    '%s',
    async (_name, vector) => {
      const outcome = await outcomeOf(vector);
      if (vector.expectation === 'verifies') {
        expect(outcome).toBe('verifies');
        return;
      }
      expect(outcome).toBeInstanceOf(Error);
      // A signature that is good for an algorithm no issuer may use is refused for its algorithm, before any key is
      // looked up. Wycheproof also calls a few vectors with stray characters in their base64url valid (lenient
      // decoders skip them); jose decodes strictly and refuses those as malformed first.
      if (vector.note !== '' && vector.result === 'valid') {
        const strict = /^[A-Za-z0-9_-]+$/.test(vector.jws.split('.')[0] ?? '');
        expect(outcome).toBeInstanceOf(strict ? errors.JOSEAlgNotAllowed : errors.JWSInvalid);
      }
      // A refusal is a verification verdict, never a crash: a JOSE error or our unknown-key refusal.
      expect(outcome instanceof errors.JOSEError || outcome instanceof AuthenticationFailedError).toBe(true);
    },
  );
});

import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spiffeMtls } from '../../../src/auth/spiffe.js';
import { apiToken } from '../../../src/auth/api-token.js';
import { ConfigurationError, CredentialsError, ServiceUnavailableError } from '../../../src/errors.js';
import { createHttpTransport, type Transport } from '../../../src/transport/http-transport.js';

/** A certificate and its key, as PEM. */
interface Issued {
  readonly cert: string;
  readonly key: string;
  readonly forgeCert: forge.pki.Certificate;
  readonly forgeKey: forge.pki.rsa.PrivateKey;
}

let serial = 1;

/**
 * Issues a test certificate with node-forge: a CA when `issuer` is absent, otherwise a leaf signed by it. Leaves
 * carry both a SPIFFE ID and 127.0.0.1, so one leaf shape serves as client SVID and as server certificate.
 */
function issue(name: string, issuer?: Issued): Issued {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  serial += 1;
  cert.serialNumber = `01${serial.toString(16).padStart(6, '0')}`;
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const subject = [{ name: 'commonName', value: name }];
  cert.setSubject(subject);
  cert.setIssuer(issuer === undefined ? subject : issuer.forgeCert.subject.attributes);
  cert.setExtensions(
    issuer === undefined
      ? [
          { name: 'basicConstraints', cA: true, critical: true },
          { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
        ]
      : [
          { name: 'basicConstraints', cA: false, critical: true },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
          { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
          { name: 'subjectAltName', altNames: [{ type: 6, value: `spiffe://example.org/${name}` }, { type: 7, ip: '127.0.0.1' }] },
        ],
  );
  cert.sign(issuer?.forgeKey ?? keys.privateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey), forgeCert: cert, forgeKey: keys.privateKey };
}

function serialOf(pem: string): string {
  return new X509Certificate(pem).serialNumber;
}

let ca: Issued;
let svidA: Issued;
let svidB: Issued;
let server: Issued;
let otherCa: Issued;

beforeAll(() => {
  ca = issue('trust-domain-ca');
  svidA = issue('payments-a', ca);
  svidB = issue('payments-b', ca);
  server = issue('keyhold', ca);
  otherCa = issue('other-ca');
});

let dir: string;
let paths: { certPath: string; keyPath: string; bundlePath: string };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'keyhold-sdk-spiffe-'));
  paths = { certPath: join(dir, 'svid.pem'), keyPath: join(dir, 'svid_key.pem'), bundlePath: join(dir, 'bundle.pem') };
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes files as spiffe-helper does, in place, and sets a distinct modification time so that a change shows. */
let mtime = 1_700_000_000;
function writeSvid(svid: Issued, only?: 'cert' | 'key'): void {
  mtime += 10;
  if (only !== 'key') {
    writeFileSync(paths.certPath, svid.cert);
    utimesSync(paths.certPath, mtime, mtime);
  }
  if (only !== 'cert') {
    writeFileSync(paths.keyPath, svid.key);
    utimesSync(paths.keyPath, mtime, mtime);
  }
}

function writeBundle(...cas: Issued[]): void {
  writeFileSync(paths.bundlePath, cas.map((c) => c.cert).join(''));
}

function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let time = 0;
  return { now: () => time, advance: (ms) => void (time += ms) };
}

describe('spiffeMtls', () => {
  it('presents the SVID and trusts the bundle, with no headers, at generation 1', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const credentials = await spiffeMtls(paths).credentials();
    expect(credentials.headers).toEqual({});
    expect(credentials.tls).toEqual({ cert: svidA.cert, key: svidA.key, ca: ca.cert, generation: 1 });
    expect(Object.isFrozen(credentials.tls)).toBe(true);
  });

  it('keeps the same material and generation while the files do not change', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const clock = manualClock();
    const provider = spiffeMtls({ ...paths, refreshIntervalMs: 5_000, now: clock.now });
    const first = await provider.credentials();
    clock.advance(5_000);
    const second = await provider.credentials();
    provider.invalidate();
    expect(await provider.credentials()).toBe(first);
    expect(second).toBe(first);
  });

  it('reloads after refreshIntervalMs when a file changed, and bumps the generation', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const clock = manualClock();
    const provider = spiffeMtls({ ...paths, refreshIntervalMs: 5_000, now: clock.now });
    expect((await provider.credentials()).tls?.generation).toBe(1);
    writeSvid(svidB);
    clock.advance(4_999);
    expect((await provider.credentials()).tls?.cert).toBe(svidA.cert);
    clock.advance(1);
    const reloaded = await provider.credentials();
    expect(reloaded.tls).toMatchObject({ cert: svidB.cert, key: svidB.key, generation: 2 });
  });

  it('reloads when only the bundle changed', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const clock = manualClock();
    const provider = spiffeMtls({ ...paths, now: clock.now });
    await provider.credentials();
    writeBundle(ca, otherCa);
    clock.advance(5_000);
    expect((await provider.credentials()).tls).toMatchObject({ ca: ca.cert + otherCa.cert, generation: 2 });
  });

  it('checks the files at once after invalidate()', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const clock = manualClock();
    const provider = spiffeMtls({ ...paths, now: clock.now });
    await provider.credentials();
    writeSvid(svidB);
    provider.invalidate();
    expect((await provider.credentials()).tls).toMatchObject({ cert: svidB.cert, generation: 2 });
  });

  it('sees a symlink swap that keeps size and modification time, by the inode', async () => {
    // As the SPIFFE CSI driver and the kubelet's atomic writer do: new files in a new directory, one rename.
    const write = (name: string, svid: Issued, size: number): void => {
      mkdirSync(join(dir, name));
      for (const [file, text] of [['svid.pem', svid.cert.padEnd(size, '\n')], ['svid_key.pem', svid.key], ['bundle.pem', ca.cert]] as const) {
        writeFileSync(join(dir, name, file), text);
        utimesSync(join(dir, name, file), 1_700_000_000, 1_700_000_000);
      }
    };
    const size = Math.max(svidA.cert.length, svidB.cert.length) + 1;
    write('v1', svidA, size);
    symlinkSync('v1', join(dir, '..data'));
    const linked = {
      certPath: join(dir, 'link-svid.pem'),
      keyPath: join(dir, 'link-key.pem'),
      bundlePath: join(dir, 'link-bundle.pem'),
    };
    symlinkSync(join('..data', 'svid.pem'), linked.certPath);
    symlinkSync(join('..data', 'svid_key.pem'), linked.keyPath);
    symlinkSync(join('..data', 'bundle.pem'), linked.bundlePath);
    const clock = manualClock();
    const provider = spiffeMtls({ ...linked, now: clock.now });
    expect((await provider.credentials()).tls?.generation).toBe(1);

    write('v2', svidB, size);
    symlinkSync('v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    expect(statSync(linked.certPath).size).toBe(size);
    clock.advance(5_000);
    const reloaded = await provider.credentials();
    expect(reloaded.tls?.generation).toBe(2);
    expect(serialOf(reloaded.tls?.cert ?? '')).toBe(serialOf(svidB.cert));
  });

  it('keeps the previous SVID while a rotation has written the new certificate but not yet its key', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const clock = manualClock();
    const provider = spiffeMtls({ ...paths, now: clock.now });
    await provider.credentials();
    writeSvid(svidB, 'cert');
    clock.advance(5_000);
    expect((await provider.credentials()).tls).toMatchObject({ cert: svidA.cert, key: svidA.key, generation: 1 });
    writeSvid(svidB, 'key');
    clock.advance(5_000);
    expect((await provider.credentials()).tls).toMatchObject({ cert: svidB.cert, key: svidB.key, generation: 2 });
  });

  it('fails at first load when the key does not match the certificate', async () => {
    writeFileSync(paths.certPath, svidA.cert);
    writeFileSync(paths.keyPath, svidB.key);
    writeBundle(ca);
    const error = await spiffeMtls(paths).credentials().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).toContain(paths.keyPath);
  });

  it('fails naming the path, never the content, when a file is not PEM', async () => {
    writeSvid(svidA);
    writeFileSync(paths.keyPath, 'not-a-key secret-material');
    writeBundle(ca);
    const error = await spiffeMtls(paths).credentials().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).toContain(paths.keyPath);
    expect((error as Error).message).not.toContain('secret-material');
    expect((error as Error).cause).toBeUndefined();
  });

  it('fails with CredentialsError naming the path when a file is missing', async () => {
    writeSvid(svidA);
    const error = await spiffeMtls(paths).credentials().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).toContain(paths.bundlePath);
    expect((error as Error).message).not.toContain('BEGIN');
  });

  it('names the first missing file in the order certificate, key, bundle, however the reads settle', async () => {
    // All three reads fail; which one fails first varies from run to run, the message must not.
    for (let attempt = 0; attempt < 20; attempt += 1) {
      const error = await spiffeMtls(paths).credentials().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CredentialsError);
      expect((error as Error).message).toContain(paths.certPath);
    }
  });

  it('shares one load among concurrent first callers', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const provider = spiffeMtls(paths);
    const all = await Promise.all(Array.from({ length: 5 }, () => provider.credentials()));
    expect(new Set(all).size).toBe(1);
    expect(all[0]?.tls?.generation).toBe(1);
  });

  it.each([
    ['no certPath', { keyPath: 'k', bundlePath: 'b' }],
    ['an empty keyPath', { certPath: 'c', keyPath: '', bundlePath: 'b' }],
    ['a negative refreshIntervalMs', { certPath: 'c', keyPath: 'k', bundlePath: 'b', refreshIntervalMs: -5 }],
  ])('refuses %s with ConfigurationError', (_name, options) => {
    expect(() => spiffeMtls(options as Parameters<typeof spiffeMtls>[0])).toThrow(ConfigurationError);
  });
});

describe('mutual TLS through the HTTP transport', () => {
  let tlsServer: https.Server;
  let url: string;
  const peers: string[] = [];
  let connections = 0;
  let closedConnections = 0;
  const transports: Transport[] = [];

  beforeAll(async () => {
    tlsServer = https.createServer({ cert: server.cert, key: server.key, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerX509Certificate();
      peers.push(peer?.serialNumber ?? 'none');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ serial: peer?.serialNumber ?? null }));
    });
    tlsServer.on('secureConnection', (socket: Socket) => {
      connections += 1;
      socket.on('close', () => {
        closedConnections += 1;
      });
    });
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await Promise.all(transports.splice(0).map((t) => t.close()));
    // The server sees the closes a little later; counting them here keeps them out of the next test.
    while (closedConnections < connections) await new Promise((resolve) => setImmediate(resolve));
    peers.length = 0;
    connections = 0;
    closedConnections = 0;
  });

  afterAll(async () => {
    tlsServer.closeAllConnections();
    await new Promise<void>((resolve) => tlsServer.close(() => resolve()));
  });

  function client(auth: Parameters<typeof createHttpTransport>[0]['auth'], ca?: string): Transport {
    const created = createHttpTransport({ url, auth, timeoutMs: 10_000, retry: { retries: 2, baseDelayMs: 1, maxDelayMs: 1 }, ...(ca ? { ca } : {}) });
    transports.push(created);
    return created;
  }

  it('presents the SVID, trusting the server through the SPIFFE bundle alone', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const answer = await client(spiffeMtls(paths)).request<{ serial: string }>('GET', '/v1/whoami');
    expect(answer.serial).toBe(serialOf(svidA.cert));
  });

  it('presents the new SVID once the files rotate, on a new connection, and closes the old one', async () => {
    writeSvid(svidA);
    writeBundle(ca);
    const clock = manualClock();
    const transport = client(spiffeMtls({ ...paths, now: clock.now }));
    await transport.request('GET', '/a');
    await transport.request('GET', '/a');
    writeSvid(svidB);
    clock.advance(5_000);
    await transport.request('GET', '/b');
    expect(peers).toEqual([serialOf(svidA.cert), serialOf(svidA.cert), serialOf(svidB.cert)]);
    expect(connections).toBe(2);
    // The old pool had no request left, so its idle connection is closed now, not at the server's idle timeout.
    while (closedConnections < 1) await new Promise((resolve) => setImmediate(resolve));
    expect(closedConnections).toBe(1);
  });

  it('trusts a private server CA given as the ca option', async () => {
    // A server that asks for no client certificate, with a certificate from a CA that is not a public root.
    const unverified = https.createServer({ cert: server.cert, key: server.key }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    await new Promise<void>((resolve) => unverified.listen(0, '127.0.0.1', resolve));
    try {
      const port = (unverified.address() as AddressInfo).port;
      const options = { url: `https://127.0.0.1:${port}`, auth: apiToken('t'), timeoutMs: 10_000, retry: { retries: 2, baseDelayMs: 1, maxDelayMs: 1 } };
      const withCa = createHttpTransport({ ...options, ca: ca.cert });
      const withoutCa = createHttpTransport(options);
      transports.push(withCa, withoutCa);
      await expect(withCa.request('GET', '/x')).resolves.toEqual({ ok: true });
      // An untrusted server certificate is configuration, not an outage: it fails after one attempt.
      const error = await withoutCa.request('GET', '/x').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ServiceUnavailableError);
      expect((error as ServiceUnavailableError).attempts).toBe(1);
    } finally {
      unverified.closeAllConnections();
      await new Promise<void>((resolve) => unverified.close(() => resolve()));
    }
  });
});

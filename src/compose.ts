import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { DestinationStream } from 'pino';
import { buildApp, buildAwsKmsApp, createLogger } from './app.js';
import { tlsServerOptions } from './http/tls.js';
import { startSweeper } from './jobs/sweeper.js';
import { systemClock } from './lib/clock.js';
import { withTimeout } from './lib/timeout.js';
import { KnexAuditRepository } from './storage/knex-audit-repository.js';
import { AuditLog } from './audit/audit-log.js';
import { AuditService } from './audit/audit-service.js';
import { AuditWriter } from './audit/audit-writer.js';
import { KeyUsageService } from './audit/key-usage.js';
import type { Logger } from 'pino';
import { PolicyAuthorizer } from './policy/authorizer.js';
import { KnexPolicyRepository } from './storage/knex-policy-repository.js';
import { PolicyService } from './policy/policy-service.js';
import { PolicyStore } from './policy/policy-store.js';
import type { Clock } from './lib/clock.js';
import type { Config } from './config.js';
import type { Services } from './services.js';
import { BatchService } from './keys/batch-service.js';
import { EnvelopeService } from './keys/envelope-service.js';
import { KeyCache } from './keys/key-cache.js';
import { KnexKeyRepository } from './storage/knex-key-repository.js';
import { KeyService } from './keys/key-service.js';
import { loadAuditKey, loadRootKeyring } from './root-keys/root-key-loader.js';
import type { RootKeyring } from './root-keys/root-keyring.js';
import { ensureAdminToken } from './tokens/admin-bootstrap.js';
import { createDatabase, migrateToLatest, migrationsAreCurrent, poolUsage, type Database } from './storage/database.js';
import { KeyholdMetrics } from './metrics/keyhold-metrics.js';
import { MetricsListener } from './metrics/metrics-listener.js';
import { KnexRootKeyRepository } from './storage/knex-root-key-repository.js';
import { KnexSystemSecretRepository } from './storage/knex-system-secret-repository.js';
import { KnexTokenRepository } from './storage/knex-token-repository.js';
import { TokenService } from './tokens/token-service.js';
import { AwsCredentialService } from './aws-kms/aws-credential-service.js';
import { KnexAwsCredentialRepository } from './storage/knex-aws-credential-repository.js';
import { readAuthConfig } from './identity/auth-config.js';
import { DatabaseChangeFeed } from './changes/change-feed.js';
import { KnexChangeRepository } from './storage/knex-change-repository.js';
import type { SiblingProcesses } from './changes/change-repository.js';
import { StartupError } from './errors.js';
import { AuthenticatorChain, type Authenticator } from './identity/authenticator.js';
import { createKubernetesAuthenticator } from './identity/kubernetes.js';
import { SpiffeAuthenticator } from './identity/spiffe.js';
import { TokenAuthenticator } from './tokens/token-authenticator.js';
import { AwsKmsService } from './aws-kms/aws-kms-service.js';
import { RequestQuota } from './aws-kms/request-quota.js';
import { SigV4Verifier } from './aws-kms/sigv4.js';

/** The opened services and what start-up produced; `close()` ends the chain with its seal and closes the store. */
export interface Keyhold {
  readonly services: Services;
  /** Set when start-up generated the first admin token; the caller prints it once. */
  readonly generatedAdminToken: { token: string; path: string } | undefined;
  close(): Promise<void>;
}

export interface KeyholdDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  /** An already open database (tests pass their own). It is not closed by `close()`. */
  readonly database?: Database;
  /** The registry the services report to; none, and they report nothing. */
  readonly metrics?: KeyholdMetrics | undefined;
  /** The other workers of this server (`KEYHOLD_WORKERS` > 1): told of this process's changes, and telling of theirs. */
  readonly siblings?: SiblingProcesses | undefined;
}

const READINESS_TIMEOUT_MS = 2000;

/**
 * The composition root: opens the store, runs migrations under knex's lock, proves the root key, makes sure an
 * admin exists, and wires the services.
 */
export async function openKeyhold(config: Config, deps: KeyholdDeps): Promise<Keyhold> {
  const ownsDatabase = deps.database === undefined;
  const db = deps.database ?? createDatabase(config.database, { acquireTimeoutMs: config.databaseTimeoutMs });
  let openedRootKey: RootKeyring | undefined;
  try {
    await migrateToLatest(db);
    const rootKeys = new KnexRootKeyRepository(db);
    const rootKey = await loadRootKeyring(config, rootKeys, deps.clock, deps.logger);
    openedRootKey = rootKey;
    const policyRepository = new KnexPolicyRepository(db);
    const policyStore = new PolicyStore({ repository: policyRepository, clock: deps.clock, ttlMs: config.cacheTtlMs });
    const { metrics } = deps;
    const authorizer = new PolicyAuthorizer(() => policyStore.current(), metrics?.denials);
    const auditKey = await loadAuditKey(rootKey, rootKeys, new KnexSystemSecretRepository(db), deps.clock);
    const auditRepository = new KnexAuditRepository(db);
    const auditWriter = config.audit.enabled
      ? new AuditWriter({
          repository: auditRepository,
          auditKey,
          // A chain per process start: the name says which replica, the suffix which run of it.
          replicaId: `${config.audit.replicaName}-${randomBytes(4).toString('hex')}`,
          clock: deps.clock,
          logger: deps.logger,
          timeoutMs: config.audit.timeoutMs,
          filePath: config.audit.filePath,
          observer: metrics?.auditCommits,
        })
      : undefined;
    if (auditWriter === undefined) deps.logger.warn('KEYHOLD_AUDIT=off: requests are not audited; never run production like this');
    const repository = new KnexKeyRepository(db);
    const cache = new KeyCache({ repository, rootKey, clock: deps.clock, ttlMs: config.cacheTtlMs });
    const envelope = new EnvelopeService({ cache, authorizer, clock: deps.clock, observer: metrics?.crypto });
    const tokens = new TokenService({
      repository: new KnexTokenRepository(db),
      authorizer,
      clock: deps.clock,
      cacheTtlMs: config.cacheTtlMs,
    });
    const awsCredentials = new AwsCredentialService({
      repository: new KnexAwsCredentialRepository(db),
      rootKey,
      authorizer,
      clock: deps.clock,
      cacheTtlMs: config.cacheTtlMs,
    });
    const authConfig = readAuthConfig(config.authConfigPath);
    const authenticators: Authenticator[] = [];
    if (authConfig.kubernetesIssuers.length > 0) {
      authenticators.push(
        await createKubernetesAuthenticator({ issuers: authConfig.kubernetesIssuers, clock: deps.clock, logger: deps.logger }),
      );
    }
    if (config.tls?.clientCaFile !== undefined) {
      if (authConfig.spiffeTrustDomains.length === 0) {
        throw new StartupError(
          'KEYHOLD_TLS_CLIENT_CA_FILE is set but KEYHOLD_AUTH_CONFIG lists no spiffe.trustDomains: every client certificate would be refused',
        );
      }
      authenticators.push(new SpiffeAuthenticator({ trustDomains: authConfig.spiffeTrustDomains, clock: deps.clock }));
    }
    authenticators.push(new TokenAuthenticator(tokens));
    const changeRepository = new KnexChangeRepository(db);
    const changes = new DatabaseChangeFeed({
      repository: changeRepository,
      logger: deps.logger,
      pollIntervalMs: config.changePollIntervalMs,
      siblings: deps.siblings,
      appliers: [
        {
          apply: (change) => {
            if (change.kind === 'key') cache.invalidate({ id: change.subject, name: change.keyName ?? '' });
          },
          dropAll: () => cache.clear(),
        },
        {
          apply: (change) => {
            if (change.kind === 'token') tokens.forget(change.subject);
          },
          dropAll: () => tokens.forgetAll(),
        },
        {
          apply: (change) => {
            if (change.kind === 'aws-credential') awsCredentials.forget(change.subject);
          },
          dropAll: () => awsCredentials.forgetAll(),
        },
        {
          apply: (change) => {
            if (change.kind === 'policy') policyStore.invalidate();
          },
          dropAll: () => policyStore.invalidate(),
        },
      ],
    });

    if (metrics !== undefined) {
      if (auditWriter !== undefined) metrics.watchAuditWriter(auditWriter);
      metrics.watchKeyCache(cache);
      metrics.watchTokenCache(tokens.cacheStats);
      metrics.watchDatabasePool(() => poolUsage(db));
      metrics.watchKeys((limit) => repository.list({ limit }));
    }
    const auditLog = new AuditLog({ repository: auditRepository, auditKey, clock: deps.clock });
    const keys = new KeyService({ repository, cache, rootKey, authorizer, clock: deps.clock });
    const awsKms =
      config.awsKms === undefined
        ? undefined
        : new AwsKmsService({
            verifier: new SigV4Verifier({ credentials: awsCredentials, region: config.awsKms.region, service: 'kms', clock: deps.clock }),
            quota: new RequestQuota(config.awsKms.requestsPerSecond, deps.clock),
            keys,
            envelope,
            authorizer,
            lookup: cache,
            region: config.awsKms.region,
            accountId: config.awsKms.accountId,
          });
    const services: Services = {
      keys,
      envelope,
      batch: new BatchService(envelope),
      tokens,
      awsCredentials,
      authenticators: new AuthenticatorChain(authenticators),
      policies: new PolicyService({ repository: policyRepository, store: policyStore, authorizer, clock: deps.clock }),
      policyStore,
      audit: new AuditService(auditLog, authorizer),
      keyUsage: new KeyUsageService({
        repository: auditRepository,
        keys: { keyIdOf: async (name) => (await repository.findByName(name))?.id },
        authorizer,
        clock: deps.clock,
      }),
      auditLog,
      auditWriter,
      changes,
      awsKms,
      async readiness() {
        const [database, migrations] = await Promise.all([
          withTimeout(db.raw('select 1'), READINESS_TIMEOUT_MS).then(() => true, () => false),
          withTimeout(migrationsAreCurrent(db), READINESS_TIMEOUT_MS).catch(() => false),
        ]);
        return { database, migrations, rootKey: true };
      },
    };
    const generatedAdminToken = await ensureAdminToken(tokens, { bootstrapToken: config.bootstrapToken, dataDir: config.dataDir }, deps.logger);
    // The feed starts from the sequence it reads now, so the policies are loaded after it: a write in between is
    // then either in the load or in the feed.
    await changes.start();
    // SQLite has no NOTIFY: the other workers hear of this one's commits from it (on PostgreSQL this does nothing).
    const { siblings } = deps;
    const stopAnnouncing = siblings === undefined ? undefined : changeRepository.onLocalCommit(() => siblings.announce());
    try {
      await policyStore.reload();
    } catch (error) {
      stopAnnouncing?.();
      await changes.close();
      throw error;
    }
    // Last, so that a start-up that fails leaves no timer behind. A failed statement is logged, not fatal.
    await auditWriter?.startHeartbeat();
    return {
      services,
      generatedAdminToken,
      async close() {
        stopAnnouncing?.();
        await changes.close();
        // Requests are answered by now (fastify closes them first): the chain ends with its seal.
        await auditWriter?.seal();
        cache.clear();
        awsCredentials.forgetAll();
        // Last of the key holders: an HSM's sessions close, and its library is finalised (C_Finalize).
        await rootKey.close();
        if (ownsDatabase) await db.destroy();
      },
    };
  } catch (error) {
    await openedRootKey?.close();
    if (ownsDatabase) await db.destroy();
    throw error;
  }
}

export interface KeyholdAppDeps {
  readonly clock?: Clock;
  /** Where logs go; defaults to stdout. Tests capture it to check that no secret is logged. */
  readonly logStream?: DestinationStream;
  /** An already open database (tests pass their own); it outlives the app. */
  readonly database?: Database;
  /** Runs the sweeper (due deletions and scheduled rotations) on `sweepIntervalMs`; tests drive it by hand. Default true. */
  readonly sweeper?: boolean;
  /** Node process metrics in the registry, when metrics are on (`KEYHOLD_METRICS_PORT`). Default true. */
  readonly processMetrics?: boolean;
  /** The other workers of this server, when it runs several (`cli/cluster.ts`). */
  readonly siblings?: SiblingProcesses;
}

export interface KeyholdApp {
  readonly app: FastifyInstance;
  readonly services: Services;
  /** Set when start-up generated the first admin token; the caller prints it once. */
  readonly generatedAdminToken: { token: string; path: string } | undefined;
  /**
   * The Prometheus listener, when `KEYHOLD_METRICS_PORT` is set. Not listening yet: the caller starts it with
   * `listen()`, as it does the app; closing the app closes it.
   */
  readonly metrics: MetricsListener | undefined;
  /**
   * The AWS-KMS-compatible endpoint on a port of its own, when `KEYHOLD_AWS_KMS_PORT` is set. Not listening yet;
   * closing the app closes it first.
   */
  readonly awsKms: FastifyInstance | undefined;
}

/**
 * Opens Keyhold and builds its HTTP app over it, with the sweeper and, when configured, the metrics listener. Closing
 * the app closes the metrics listener, stops the sweeper and then closes the services, after the requests in flight
 * are answered. Nothing listens yet.
 */
export async function openKeyholdApp(config: Config, deps: KeyholdAppDeps = {}): Promise<KeyholdApp> {
  const clock = deps.clock ?? systemClock;
  const logger = createLogger(config, deps.logStream);
  // Read before the store is opened, so a missing certificate fails start-up without leaving anything open.
  const tls = config.tls === undefined ? undefined : tlsServerOptions(config.tls);
  const metrics = config.metrics === undefined ? undefined : new KeyholdMetrics({ clock, processMetrics: deps.processMetrics });
  const keyhold = await openKeyhold(config, { clock, logger, database: deps.database, metrics, siblings: deps.siblings });
  let app: FastifyInstance;
  let awsKms: FastifyInstance | undefined;
  try {
    const options = {
      logger,
      clock,
      tls,
      metrics: metrics?.http,
      awsKmsPath: config.awsKms?.path,
      accessLog: config.accessLog,
      slowRequestMs: config.slowRequestMs,
    };
    app = await buildApp(keyhold.services, options);
    try {
      if (config.awsKms?.port !== undefined) awsKms = await buildAwsKmsApp(keyhold.services, options);
    } catch (error) {
      await app.close();
      throw error;
    }
  } catch (error) {
    await keyhold.close();
    throw error;
  }
  const { keys, changes, auditLog } = keyhold.services;
  const stopSweeper =
    deps.sweeper === false
      ? undefined
      : startSweeper({ keys, changes, auditLog, clock, logger, intervalMs: config.sweepIntervalMs, auditRetentionDays: config.audit.retentionDays });
  const listener = metrics === undefined || config.metrics === undefined ? undefined : new MetricsListener(metrics, config.metrics);
  app.addHook('onClose', async () => {
    await awsKms?.close();
    await listener?.close();
    stopSweeper?.();
    await keyhold.close();
  });
  return { app, services: keyhold.services, generatedAdminToken: keyhold.generatedAdminToken, metrics: listener, awsKms };
}

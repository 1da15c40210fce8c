import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { withTimeout } from './lib/timeout.js';
import { KnexAuditRepository } from './storage/knex-audit-repository.js';
import { AuditService } from './audit/audit-service.js';
import { AuditWriter } from './audit/audit-writer.js';
import type { Logger } from 'pino';
import { PolicyAuthorizer } from './policy/authorizer.js';
import { KnexPolicyRepository } from './storage/knex-policy-repository.js';
import { PolicyService } from './policy/policy-service.js';
import { PolicyStore } from './policy/policy-store.js';
import type { Clock } from './lib/clock.js';
import type { Config } from './config.js';
import type { RootKey } from './root-keys/root-key.js';
import { BatchService } from './keys/batch-service.js';
import { EnvelopeService } from './keys/envelope-service.js';
import { KeyCache } from './keys/key-cache.js';
import { KnexKeyRepository } from './storage/knex-key-repository.js';
import { KeyService } from './keys/key-service.js';
import { loadAuditKey, loadRootKeyring, writeAdminTokenFile } from './root-keys/root-key-loader.js';
import { createDatabase, migrateToLatest, migrationsAreCurrent, type Database } from './storage/database.js';
import { isUniqueViolation } from './lib/database-errors.js';
import { KnexRootKeyRepository } from './storage/knex-root-key-repository.js';
import { KnexSystemSecretRepository } from './storage/knex-system-secret-repository.js';
import { KnexTokenRepository } from './storage/knex-token-repository.js';
import { TokenService } from './tokens/token-service.js';
import { readAuthConfig } from './identity/auth-config.js';
import type { ChangeFeed } from './changes/change.js';
import { DatabaseChangeFeed } from './changes/change-feed.js';
import { KnexChangeRepository } from './storage/knex-change-repository.js';
import { KeyholdError, StartupError } from './errors.js';
import { AuthenticatorChain, type Authenticator } from './identity/authenticator.js';
import { createKubernetesAuthenticator } from './identity/kubernetes.js';
import { SpiffeAuthenticator } from './identity/spiffe.js';
import { TokenAuthenticator } from './tokens/token-authenticator.js';

export interface ReadinessChecks {
  readonly database: boolean;
  readonly rootKey: boolean;
  readonly migrations: boolean;
}

/** The use cases the HTTP layer calls. */
export interface Services {
  readonly keys: KeyService;
  readonly crypto: EnvelopeService;
  readonly batch: BatchService;
  readonly tokens: TokenService;
  /** Kubernetes service-account tokens, then SPIFFE client certificates, then API tokens. */
  readonly authenticators: AuthenticatorChain;
  readonly policies: PolicyService;
  /** The compiled policy set; requests bring it up to date before they are handled. */
  readonly policyStore: PolicyStore;
  readonly audit: AuditService;
  /** Writes on every replica, in commit order; this replica's caches have applied each event it delivers. */
  readonly changes: ChangeFeed;
  readiness(): Promise<ReadinessChecks>;
}

export interface Keyhold {
  readonly services: Services;
  readonly db: Database;
  readonly rootKey: RootKey;
  /** Undefined only with `KEYHOLD_AUDIT=off`. */
  readonly auditWriter: AuditWriter | undefined;
  readonly cache: KeyCache;
  readonly changeFeed: DatabaseChangeFeed;
  /** Set when start-up generated the first admin token; the caller prints it once. */
  readonly generatedAdminToken: { token: string; path: string } | undefined;
  close(): Promise<void>;
}

export interface KeyholdDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  /** An already open database (tests pass one bound to their own schema). It is not closed by `close()`. */
  readonly database?: Database;
}

const READINESS_TIMEOUT_MS = 2000;

async function ensureAdminToken(
  config: Config,
  tokens: TokenService,
  logger: Logger,
): Promise<{ token: string; path: string } | undefined> {
  if (await tokens.hasLiveAdmin()) return undefined;
  try {
    if (config.bootstrapToken !== undefined) {
      await tokens.issue('bootstrap-admin', true, undefined, config.bootstrapToken);
      logger.info('created the admin token from KEYHOLD_BOOTSTRAP_TOKEN');
      return undefined;
    }
    const issued = await tokens.issue('admin', true);
    const path = join(config.dataDir, 'admin.token');
    writeAdminTokenFile(path, issued.token);
    return { token: issued.token, path };
  } catch (error) {
    // Another replica bootstrapped at the same moment; its admin token stands.
    if (isUniqueViolation(error) || (error instanceof KeyholdError && error.code === 'KH_ERR_TOKEN_EXISTS')) return undefined;
    throw error;
  }
}

/**
 * The composition root: opens the store, runs migrations under knex's lock, proves the root key, makes sure an
 * admin exists, and wires the services.
 */
export async function openKeyhold(config: Config, deps: KeyholdDeps): Promise<Keyhold> {
  const ownsDatabase = deps.database === undefined;
  const db = deps.database ?? createDatabase(config.database, { acquireTimeoutMs: config.databaseTimeoutMs });
  try {
    await migrateToLatest(db);
    const rootKeys = new KnexRootKeyRepository(db);
    const rootKey = await loadRootKeyring(config.rootKey, config.previousRootKeyFile, rootKeys, deps.clock, deps.logger);
    const policyRepository = new KnexPolicyRepository(db);
    const policyStore = new PolicyStore({ repository: policyRepository, clock: deps.clock, ttlMs: config.cacheTtlMs });
    const authorizer = new PolicyAuthorizer(() => policyStore.current());
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
        })
      : undefined;
    if (auditWriter === undefined) deps.logger.warn('KEYHOLD_AUDIT=off: requests are not audited; never run production like this');
    const repository = new KnexKeyRepository(db);
    const cache = new KeyCache({ repository, rootKey, clock: deps.clock, ttlMs: config.cacheTtlMs });
    const crypto = new EnvelopeService({ cache, authorizer, clock: deps.clock });
    const tokens = new TokenService({
      repository: new KnexTokenRepository(db),
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
    const changes = new DatabaseChangeFeed({
      repository: new KnexChangeRepository(db),
      logger: deps.logger,
      pollIntervalMs: config.changePollIntervalMs,
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
            if (change.kind === 'policy') policyStore.invalidate();
          },
          dropAll: () => policyStore.invalidate(),
        },
      ],
    });

    const services: Services = {
      keys: new KeyService({ repository, cache, rootKey, authorizer, clock: deps.clock }),
      crypto,
      batch: new BatchService(crypto),
      tokens,
      authenticators: new AuthenticatorChain(authenticators),
      policies: new PolicyService({ repository: policyRepository, store: policyStore, authorizer, clock: deps.clock }),
      policyStore,
      audit: new AuditService({ repository: auditRepository, auditKey, authorizer, clock: deps.clock }),
      changes,
      async readiness() {
        const [database, migrations] = await Promise.all([
          withTimeout(db.raw('select 1'), READINESS_TIMEOUT_MS).then(() => true, () => false),
          withTimeout(migrationsAreCurrent(db), READINESS_TIMEOUT_MS).catch(() => false),
        ]);
        return { database, migrations, rootKey: true };
      },
    };
    const generatedAdminToken = await ensureAdminToken(config, tokens, deps.logger);
    // The feed starts from the sequence it reads now, so the policies are loaded after it: a write in between is
    // then either in the load or in the feed.
    await changes.start();
    try {
      await policyStore.reload();
    } catch (error) {
      await changes.close();
      throw error;
    }
    // Last, so that a start-up that fails leaves no timer behind. A failed statement is logged, not fatal.
    await auditWriter?.startHeartbeat();
    return {
      services,
      db,
      rootKey,
      cache,
      changeFeed: changes,
      auditWriter,
      generatedAdminToken,
      async close() {
        await changes.close();
        // Requests are answered by now (fastify closes them first): the chain ends with its seal.
        await auditWriter?.seal();
        cache.clear();
        if (ownsDatabase) await db.destroy();
      },
    };
  } catch (error) {
    if (ownsDatabase) await db.destroy();
    throw error;
  }
}

import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { execForm, readDockerfile } from '../helpers/dockerfile.js';

/**
 * What matters in deploy/kubernetes/, checked on what `kubectl kustomize` renders (so a broken kustomization fails
 * here too) and on the KMS plugin's files, which the kubelet and the API server read as they are.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BASE = join(ROOT, 'deploy/kubernetes/base');
const PLUGIN = join(ROOT, 'deploy/kubernetes/kms-plugin');
/** The placeholder Secrets, applied once by hand and deliberately not part of the base (a re-apply must not overwrite real ones). */
const SECRETS_EXAMPLE = join(ROOT, 'deploy/kubernetes/secrets.example.yaml');

type K8sObject = any;

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const hasKubectl = kubectl.status === 0;
if (!hasKubectl) console.warn('deploy-manifests.test.ts: kubectl is not installed; the rendered manifests are not checked');

function render(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  return parseAllDocuments(text).map((doc) => doc.toJS());
}

function readObjects(path: string): K8sObject[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((doc) => doc.toJS());
}

function only(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  expect(found, `one ${kind}`).toHaveLength(1);
  return found[0];
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

function env(container: K8sObject, name: string): string | undefined {
  return container.env?.find((e: K8sObject) => e.name === name)?.value;
}

const dockerfile = readDockerfile(join(ROOT, 'Dockerfile')).at(-1)!;

describe.skipIf(!hasKubectl)('the Keyhold manifests (deploy/kubernetes/base)', () => {
  const objects = hasKubectl ? render(BASE) : [];
  const exampleSecrets = readObjects(SECRETS_EXAMPLE);
  const deployment = () => only(objects, 'Deployment');
  const podSpec = () => deployment().spec.template.spec;
  const containers = (): K8sObject[] => [...(podSpec().initContainers ?? []), ...podSpec().containers];
  const keyhold = () => podSpec().containers.find((c: K8sObject) => c.name === 'keyhold');

  it('run at least two replicas', () => {
    expect(deployment().spec.replicas).toBeGreaterThanOrEqual(2);
  });

  it('run every container as non-root, read-only, without privilege escalation or capabilities, under RuntimeDefault seccomp', () => {
    expect(podSpec().securityContext.runAsNonRoot).toBe(true);
    expect(podSpec().securityContext.runAsUser).toBeGreaterThan(0);
    expect(podSpec().securityContext.seccompProfile.type).toBe('RuntimeDefault');
    for (const container of containers()) {
      expect(container.securityContext, container.name).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(container.securityContext.runAsUser ?? podSpec().securityContext.runAsUser).toBeGreaterThan(0);
      expect(container.securityContext.privileged ?? false).toBe(false);
    }
  });

  it('give every container resource requests and a memory limit', () => {
    for (const container of containers()) {
      expect(container.resources?.requests?.cpu, container.name).toBeDefined();
      expect(container.resources?.requests?.memory, container.name).toBeDefined();
      expect(container.resources?.limits?.memory, container.name).toBeDefined();
    }
  });

  it('set the worker count deliberately, one process per pod: in a container the default counts the node\'s CPUs', () => {
    expect(env(keyhold(), 'KEYHOLD_WORKERS')).toBe('1');
  });

  it('probe liveness on /healthz and readiness on /readyz, on the API port', () => {
    const container = keyhold();
    expect(container.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(container.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
    const http = container.ports.find((p: K8sObject) => p.name === 'http');
    expect(String(http.containerPort)).toBe(env(container, 'KEYHOLD_PORT'));
  });

  it('give the pod a grace period longer than the preStop sleep plus KEYHOLD_SHUTDOWN_TIMEOUT_MS', () => {
    const container = keyhold();
    const shutdownSeconds = Number(env(container, 'KEYHOLD_SHUTDOWN_TIMEOUT_MS') ?? 10_000) / 1000;
    const command: string[] = container.lifecycle.preStop.exec?.command ?? [];
    const preStopSeconds = command[0] === 'sleep' ? Number(command[1]) : Number(container.lifecycle.preStop.sleep?.seconds);
    expect(preStopSeconds).toBeGreaterThan(0);
    expect(podSpec().terminationGracePeriodSeconds).toBeGreaterThan(preStopSeconds + shutdownSeconds);
  });

  it('run the image as built: its ENTRYPOINT with the server command, and NODE_OPTIONS as the image sets it', () => {
    const container = keyhold();
    expect(container.command ?? execForm(dockerfile, 'ENTRYPOINT')).toEqual(execForm(dockerfile, 'ENTRYPOINT'));
    expect(container.args).toEqual(execForm(dockerfile, 'CMD'));
    const imageOptions = dockerfile.instructions.find((i) => i.keyword === 'ENV' && i.args.includes('NODE_OPTIONS='));
    expect(imageOptions?.args).toContain(`NODE_OPTIONS=${env(container, 'NODE_OPTIONS')}`);
  });

  it('write only to volumes: the data dir and /tmp are emptyDirs', () => {
    const container = keyhold();
    const volumes = new Map<string, K8sObject>(podSpec().volumes.map((v: K8sObject) => [v.name, v]));
    for (const path of [env(container, 'KEYHOLD_DATA_DIR'), '/tmp']) {
      const mount = container.volumeMounts.find((m: K8sObject) => m.mountPath === path);
      expect(mount, path).toBeDefined();
      expect(volumes.get(mount.name).emptyDir, path).toBeDefined();
    }
  });

  it('take the database URL from a Secret and the root key file from a Secret volume', () => {
    const container = keyhold();
    const url = container.env.find((e: K8sObject) => e.name === 'KEYHOLD_DATABASE_URL');
    const database = exampleSecrets.find((o) => o.kind === 'Secret' && o.metadata.name === url.valueFrom.secretKeyRef.name);
    expect(Object.keys(database.stringData)).toContain(url.valueFrom.secretKeyRef.key);
    const rootKeyFile = env(container, 'KEYHOLD_ROOT_KEY_FILE')!;
    const mount = container.volumeMounts.find((m: K8sObject) => rootKeyFile.startsWith(`${m.mountPath}/`));
    const volume = podSpec().volumes.find((v: K8sObject) => v.name === mount.name);
    const secret = exampleSecrets.find((o) => o.kind === 'Secret' && o.metadata.name === volume.secret.secretName);
    expect(Object.keys(secret.stringData ?? secret.data)).toContain(rootKeyFile.slice(mount.mountPath.length + 1));
  });

  it('configure the in-cluster issuer by OIDC discovery, with the files the pod mounts', async () => {
    const container = keyhold();
    const authFile = env(container, 'KEYHOLD_AUTH_CONFIG')!;
    const mount = container.volumeMounts.find((m: K8sObject) => authFile.startsWith(`${m.mountPath}/`));
    const volume = podSpec().volumes.find((v: K8sObject) => v.name === mount.name);
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume.configMap.name);
    const text: string = configMap.data[authFile.slice(mount.mountPath.length + 1)];
    const { parseAuthConfig } = await import('../../src/identity/auth-config.js');
    const config = parseAuthConfig(text, '/etc/keyhold/auth');
    const issuer = config.kubernetesIssuers.find((i) => i.issuer === 'https://kubernetes.default.svc.cluster.local');
    expect(issuer?.jwks).toEqual({ kind: 'discovery' });
    // The CA and the token come from the pod's own service-account mount.
    expect(podSpec().automountServiceAccountToken).toBe(true);
    expect(issuer?.caFile).toMatch(/^\/var\/run\/secrets\/kubernetes\.io\/serviceaccount\//);
  });

  it('have a PodDisruptionBudget and Services that select the Deployment’s pods, on ports the container names', () => {
    const labels = deployment().spec.template.metadata.labels;
    const pdb = only(objects, 'PodDisruptionBudget');
    expect(matches(pdb.spec.selector.matchLabels, labels)).toBe(true);
    const portNames = keyhold().ports.map((p: K8sObject) => p.name);
    const services = objects.filter((o) => o.kind === 'Service');
    expect(services.length).toBeGreaterThan(0);
    for (const service of services) {
      expect(matches(service.spec.selector, labels), service.metadata.name).toBe(true);
      for (const port of service.spec.ports) expect(portNames).toContain(port.targetPort);
    }
    expect(services.flatMap((s) => s.spec.ports.map((p: K8sObject) => p.targetPort))).toEqual(
      expect.arrayContaining(['http', 'metrics']),
    );
  });

  it('have a NetworkPolicy for the pods that admits the metrics port only from the monitoring namespace', () => {
    const policy = only(objects, 'NetworkPolicy');
    expect(matches(policy.spec.podSelector.matchLabels, deployment().spec.template.metadata.labels)).toBe(true);
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    const metricsRules = policy.spec.ingress.filter((rule: K8sObject) => rule.ports.some((p: K8sObject) => p.port === 'metrics'));
    expect(metricsRules).toHaveLength(1);
    expect(metricsRules[0].from).toEqual([
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
    ]);
  });

  it('restrict every egress rule but DNS to explicit destinations', () => {
    const policy = only(objects, 'NetworkPolicy');
    const isDns = (rule: K8sObject) => rule.ports.every((p: K8sObject) => p.port === 53);
    const dns = policy.spec.egress.filter(isDns);
    expect(dns).toHaveLength(1);
    expect(dns[0].to).toEqual([
      {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
        podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
      },
    ]);
    const others = policy.spec.egress.filter((rule: K8sObject) => !isDns(rule));
    expect(others.flatMap((rule: K8sObject) => rule.ports.map((p: K8sObject) => p.port)).sort()).toEqual([443, 5432, 6443]);
    for (const rule of others) {
      const ports = JSON.stringify(rule.ports);
      expect(rule.to?.length, ports).toBeGreaterThan(0);
      for (const peer of rule.to) {
        expect(peer.ipBlock ?? peer.namespaceSelector ?? peer.podSelector, ports).toBeDefined();
        // An ipBlock of everything is no restriction.
        if (peer.ipBlock) expect(peer.ipBlock.cidr, ports).not.toMatch(/\/0$/);
      }
    }
  });

  it('apply no Secret: the placeholders are in secrets.example.yaml, outside the kustomization', () => {
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    const kustomization = readObjects(join(BASE, 'kustomization.yaml'))[0];
    expect(kustomization.resources).not.toContain('secrets.yaml');
    expect(kustomization.secretGenerator).toBeUndefined();
    // The Secrets the Deployment names are the ones the example holds, in the namespace the base deploys to.
    const names = new Set(exampleSecrets.map((s) => s.metadata.name));
    for (const volume of podSpec().volumes.filter((v: K8sObject) => v.secret)) expect(names).toContain(volume.secret.secretName);
    for (const e of keyhold().env.filter((e: K8sObject) => e.valueFrom?.secretKeyRef)) expect(names).toContain(e.valueFrom.secretKeyRef.name);
    for (const secret of exampleSecrets) expect(secret.metadata.namespace, secret.metadata.name).toBe(deployment().metadata.namespace);
  });

  it('commit no real-looking secret: every value in secrets.example.yaml is a placeholder', () => {
    const secrets = exampleSecrets.filter((o) => o.kind === 'Secret');
    expect(secrets).toHaveLength(exampleSecrets.length);
    expect(secrets.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      expect(secret.data ?? {}, secret.metadata.name).toEqual({});
      for (const [key, value] of Object.entries(secret.stringData ?? {})) {
        expect(value, `${secret.metadata.name}/${key}`).toBe('REPLACE_ME');
      }
    }
  });
});

describe('the KMS plugin (deploy/kubernetes/kms-plugin)', () => {
  const [pod] = readObjects(join(PLUGIN, 'keyhold-kms-plugin.yaml'));
  const [encryption] = readObjects(join(PLUGIN, 'encryption-config.yaml'));
  const container = pod.spec.containers[0];

  it('encrypt Secrets with the kms v2 provider keyhold first, and still read unencrypted ones', () => {
    expect(encryption).toMatchObject({ apiVersion: 'apiserver.config.k8s.io/v1', kind: 'EncryptionConfiguration' });
    expect(encryption.resources).toHaveLength(1);
    expect(encryption.resources[0].resources).toEqual(['secrets']);
    const [kms, identity] = encryption.resources[0].providers;
    expect(kms.kms).toMatchObject({ apiVersion: 'v2', name: 'keyhold', timeout: '3s' });
    expect(identity).toEqual({ identity: {} });
  });

  it('serve the socket the EncryptionConfiguration names, in the host directory the pod mounts', () => {
    const endpoint: string = encryption.resources[0].providers[0].kms.endpoint;
    expect(endpoint).toMatch(/^unix:\/\//);
    const socket = endpoint.slice('unix://'.length);
    const args: string[] = container.args;
    expect(args[0]).toBe('kms-plugin');
    expect(args[args.indexOf('--socket') + 1]).toBe(socket);
    expect(args[args.indexOf('--key') + 1]).toBe('cluster-secrets');
    const mount = container.volumeMounts.find((m: K8sObject) => socket.startsWith(`${m.mountPath}/`));
    const volume = pod.spec.volumes.find((v: K8sObject) => v.name === mount.name);
    // The API server sees the same path on the host.
    expect(volume.hostPath.path).toBe(mount.mountPath);
  });

  it('run as non-root 10001 from a socket directory that must already exist', () => {
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(pod.spec.securityContext.runAsUser).toBe(10001);
    expect(container.securityContext.runAsUser ?? pod.spec.securityContext.runAsUser).toBe(10001);
    expect(container.securityContext.runAsNonRoot ?? true).toBe(true);
    expect(container.securityContext.privileged ?? false).toBe(false);
    // A directory the kubelet created would be root-owned 0755, where user 10001 cannot create the socket.
    const socketDir = pod.spec.volumes.find((v: K8sObject) => v.name === 'socket-dir');
    expect(socketDir.hostPath.type).toBe('Directory');
    const text = readFileSync(join(PLUGIN, 'keyhold-kms-plugin.yaml'), 'utf8');
    expect(text).toContain(`install -d -o 10001 -g 10001 -m 0700 ${socketDir.hostPath.path}`);
  });

  it('run the same image entry point, read-only, without privilege escalation or capabilities', () => {
    expect(container.command ?? execForm(dockerfile, 'ENTRYPOINT')).toEqual(execForm(dockerfile, 'ENTRYPOINT'));
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(container.resources.limits.memory).toBeDefined();
    expect(pod.spec.securityContext.seccompProfile.type).toBe('RuntimeDefault');
  });
});

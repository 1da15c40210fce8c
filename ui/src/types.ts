/** The API's shapes the console reads (openapi.yaml's components). */

export interface Whoami {
  id: string;
  type: 'token' | 'kubernetes' | 'spiffe';
  admin: boolean;
  attributes: Record<string, string>;
}

export interface KeyVersion {
  version: number;
  state: 'enabled' | 'disabled' | 'destroyed';
  createdAt: string;
  updatedAt: string;
  destroyedAt: string | null;
}

interface KeyFields {
  id: string;
  name: string;
  description: string;
  state: 'enabled' | 'disabled' | 'pending_deletion' | 'destroyed';
  primaryVersion: number;
  minDecryptionVersion: number;
  rotationPeriodSeconds: number | null;
  nextRotationAt: string | null;
  deletionDate: string | null;
  createdAt: string;
}

export interface Key extends KeyFields {
  versions: KeyVersion[];
}

/** A key in the listing: its versions counted. */
export interface KeySummary extends KeyFields {
  versionCount: number;
  enabledVersionCount: number;
}

export interface PolicyStatement {
  sid?: string;
  effect: 'allow' | 'deny';
  principals: string[];
  actions: string[];
  keys: string[];
}

export interface Policy {
  name: string;
  statements: PolicyStatement[];
  revision: number;
}

export interface Token {
  id: string;
  name: string;
  admin: boolean;
  createdAt: string;
  expiresAt: string | null;
}

export interface AuditRecord {
  replicaId: string;
  sequence: number;
  time: string;
  requestId: string;
  principalId: string | null;
  method: string;
  route: string | null;
  action: string | null;
  keyName: string | null;
  keyVersion: number | null;
  decision: 'allow' | 'deny' | null;
  decisionReason: string | null;
  outcome: string;
  status: number;
}

export interface Usage {
  keyName: string;
  keyId: string;
  since: string;
  until: string;
  usage: { principal: string; keyVersion: number; action: string; count: number; firstSeen: string; lastSeen: string }[];
}

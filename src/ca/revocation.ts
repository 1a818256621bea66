// The replicated revocation list (DESIGN.md §3.3): removed node IDs and their certificate serials.
// An entry is kept until 7 days after the node's last certificate expired; after that the
// certificate is refused for being expired anyway.
import { ShoalError } from "../base/errors.js";
import type { Clock } from "../base/clock.js";
import { isValidId } from "../base/ids.js";
import type { RevocationList as RevocationListProto } from "../proto/shoal/v1/objects.js";
import { normalizeSerial, type RootCA } from "./root-ca.js";
import type { RevocationChecker } from "./verify.js";
import { x509 } from "./x509-provider.js";
import { ECDSA_P256_SHA256 } from "./x509-provider.js";

export const DAY_MS = 24 * 60 * 60 * 1000;
export const REVOCATION_RETENTION_AFTER_EXPIRY_MS = 7 * DAY_MS;
export const DEFAULT_CRL_NEXT_UPDATE_MS = 7 * DAY_MS;
const SERIAL_PATTERN = /^[0-9A-Fa-f]{1,64}$/;

export interface RevokedNodeEntry {
  nodeId: string;
  /** Canonical uppercase hex serials (normalizeSerial). */
  serials: string[];
  removedAt: Date;
  /** NotAfter of the node's last certificate; the entry is collected 7 days after it. */
  lastCertNotAfter: Date;
}

interface Entry {
  nodeId: string;
  serials: Set<string>;
  removedAtMs: number;
  lastCertNotAfterMs: number;
}

function checkDate(value: Date | undefined, what: string): number {
  const ms = value?.getTime();
  if (ms === undefined || !Number.isFinite(ms)) throw new ShoalError("INVALID_ARGUMENT", `${what} must be a valid date`);
  return ms;
}

export class RevocationList implements RevocationChecker {
  private readonly byNodeId = new Map<string, Entry>();
  private readonly nodeIdBySerial = new Map<string, string>();

  get size(): number {
    return this.byNodeId.size;
  }

  /**
   * Revokes a node and the given certificate serials. Revoking a node again merges the serials and
   * keeps the later lastNotAfter, so the entry lives as long as any of its certificates could.
   */
  revoke(nodeId: string, serials: readonly string[], lastNotAfter: Date, removedAt: Date): void {
    if (!isValidId(nodeId)) throw new ShoalError("INVALID_ARGUMENT", "nodeId must be 25 characters of [0-9a-z]");
    const lastCertNotAfterMs = checkDate(lastNotAfter, "lastNotAfter");
    const removedAtMs = checkDate(removedAt, "removedAt");
    const canonical = serials.map((serial) => {
      if (typeof serial !== "string" || !SERIAL_PATTERN.test(serial)) {
        throw new ShoalError("INVALID_ARGUMENT", "certificate serials must be 1-64 hex digits");
      }
      return normalizeSerial(serial);
    });
    let entry = this.byNodeId.get(nodeId);
    if (!entry) {
      entry = { nodeId, serials: new Set(), removedAtMs, lastCertNotAfterMs };
      this.byNodeId.set(nodeId, entry);
    } else {
      entry.removedAtMs = Math.min(entry.removedAtMs, removedAtMs);
      entry.lastCertNotAfterMs = Math.max(entry.lastCertNotAfterMs, lastCertNotAfterMs);
    }
    for (const serial of canonical) {
      entry.serials.add(serial);
      this.nodeIdBySerial.set(serial, nodeId);
    }
  }

  /** True when either the node ID or the certificate serial was revoked. */
  isRevoked(subject: { nodeId: string; serial: string }): boolean {
    return this.byNodeId.has(subject.nodeId) || this.nodeIdBySerial.has(normalizeSerial(subject.serial));
  }

  /** Drops entries whose last certificate expired at least 7 days before `now`; returns their node IDs. */
  gc(now: Date | number): string[] {
    const nowMs = typeof now === "number" ? now : now.getTime();
    const dropped: string[] = [];
    for (const entry of this.byNodeId.values()) {
      if (nowMs >= entry.lastCertNotAfterMs + REVOCATION_RETENTION_AFTER_EXPIRY_MS) {
        this.byNodeId.delete(entry.nodeId);
        for (const serial of entry.serials) {
          if (this.nodeIdBySerial.get(serial) === entry.nodeId) this.nodeIdBySerial.delete(serial);
        }
        dropped.push(entry.nodeId);
      }
    }
    return dropped;
  }

  entries(): RevokedNodeEntry[] {
    return [...this.byNodeId.values()].map((entry) => ({
      nodeId: entry.nodeId,
      serials: [...entry.serials],
      removedAt: new Date(entry.removedAtMs),
      lastCertNotAfter: new Date(entry.lastCertNotAfterMs),
    }));
  }

  toProto(): RevocationListProto {
    return {
      nodes: this.entries().map((entry) => ({
        nodeId: entry.nodeId,
        serials: entry.serials,
        removedAt: entry.removedAt,
        lastCertNotAfter: entry.lastCertNotAfter,
      })),
    };
  }

  /** Rebuilds the list from the replicated cluster object; INVALID_ARGUMENT on a malformed entry. */
  static fromProto(proto: RevocationListProto | undefined): RevocationList {
    const list = new RevocationList();
    for (const node of proto?.nodes ?? []) {
      list.revoke(node.nodeId, node.serials, node.lastCertNotAfter as Date, node.removedAt as Date);
    }
    return list;
  }
}

/**
 * The list as an X.509 CRL signed by the root CA (for TLS-layer checks), PEM labelled "X509 CRL"
 * as OpenSSL and Node expect. Each serial is revoked as of its node's removal time.
 */
export async function renderCrl(rootCA: RootCA, list: RevocationList, options: { clock: Clock; nextUpdateMs?: number }): Promise<string> {
  const nextUpdateMs = options.nextUpdateMs ?? DEFAULT_CRL_NEXT_UPDATE_MS;
  if (!Number.isFinite(nextUpdateMs) || nextUpdateMs <= 0) throw new ShoalError("INVALID_ARGUMENT", "nextUpdateMs must be positive");
  const signingKey = await rootCA.signingCryptoKey();
  const issuerCert = new x509.X509Certificate(rootCA.certPem);
  const nowMs = Math.floor(options.clock.nowMs() / 1000) * 1000;
  const entries = list.entries().flatMap((entry) =>
    entry.serials.map((serialNumber) => ({ serialNumber, revocationDate: entry.removedAt })),
  );
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuerCert.subjectName,
    thisUpdate: new Date(nowMs),
    nextUpdate: new Date(nowMs + nextUpdateMs),
    entries,
    signingAlgorithm: ECDSA_P256_SHA256,
    signingKey,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(issuerCert)],
  });
  return crl.toString("pem").replace(/-----(BEGIN|END) CRL-----/g, "-----$1 X509 CRL-----") + "\n";
}

// Prefetch grants signed by a manager's own node key (v2, clusters whose managers hold no root key,
// `shoal init --external-ca`): they verify with the root certificate and the revocation list alone,
// and only when the signer is a current manager of this cluster. A worker's key, a revoked (removed
// or demoted) manager's, another cluster's manager's, a manager under another root, an expired
// manager certificate, a peer without a revocation list, a tampered or truncated grant and a v1
// signature relabelled as v2 are all refused with GRANT_INVALID. v1 (CA key) grants are unchanged.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ManualClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import {
  createNodeKeyAndCsr,
  createRootCA,
  managerGrantSigner,
  MAX_MANAGER_SIGNED_GRANT_BYTES,
  RevocationList,
  RootCA,
  signGrant,
  verifyGrant,
  type GrantExpectation,
  type NodeRole,
  type PrefetchGrant,
} from "../../src/ca/index.js";
import type { ShoalErrorCode } from "../../src/base/errors.js";
import { throwsCode as throwsCodeOnly } from "./fixtures.js";

function throwsCode(fn: () => unknown, code: ShoalErrorCode, pattern?: RegExp): void {
  const err = throwsCodeOnly(fn, code);
  if (pattern !== undefined) assert.match(err.message, pattern);
}

const NOW_MS = Date.UTC(2030, 0, 1);
const clock = new ManualClock(NOW_MS);
const rootPromise = createRootCA({ clock: new ManualClock(NOW_MS - 3600_000) });
const otherRootPromise = createRootCA({ clock: new ManualClock(NOW_MS - 3600_000) });
const CLUSTER = newId();

async function nodeSigner(root: RootCA, role: NodeRole, options: { clusterId?: string; validityMs?: number } = {}) {
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const nodeId = newId();
  const issued = root.issueNodeCertificate({ csrPem, nodeId, role, clusterId: options.clusterId ?? CLUSTER, validityMs: options.validityMs ?? 2160 * 3600_000, clock });
  return { nodeId, serial: issued.serial, signer: managerGrantSigner(issued.certPem, privateKey.export({ type: "pkcs8", format: "pem" }).toString()) };
}

function aGrant(overrides: Partial<PrefetchGrant> = {}): PrefetchGrant {
  return { jobId: newId(), clusterId: CLUSTER, zone: "zone-a", nodeId: newId(), blobDigest: `sha256:${createHash("sha256").update("layer").digest("hex")}`, expiresAtMs: NOW_MS + 5 * 60_000, ...overrides };
}

/** `"none"`: a verifier without a revocation list. */
function expectationOf(grant: PrefetchGrant, revocation: RevocationList | "none" = new RevocationList(), nowMs = NOW_MS): GrantExpectation {
  return { clusterId: grant.clusterId, zone: grant.zone, nodeId: grant.nodeId, blobDigest: grant.blobDigest, nowMs, ...(revocation === "none" ? {} : { revocation }) };
}

test("a manager-signed grant verifies with the root certificate and the revocation list alone", async () => {
  const root = await rootPromise;
  const workerRoot = RootCA.fromCertOnly(root.certPem);
  const { signer } = await nodeSigner(root, "swarm-manager");
  const grant = aGrant();
  const bytes = signGrant(signer, grant);
  assert.equal(bytes[0], 2, "version 2");
  assert.ok(bytes.length <= MAX_MANAGER_SIGNED_GRANT_BYTES);
  assert.deepEqual(verifyGrant(workerRoot, bytes, expectationOf(grant)), grant);
  // The expectations are checked after the signer, each with its own code, as for v1.
  throwsCode(() => verifyGrant(workerRoot, bytes, { ...expectationOf(grant), nodeId: newId() }), "GRANT_WRONG_NODE");
  throwsCode(() => verifyGrant(workerRoot, bytes, { ...expectationOf(grant), zone: "zone-b" }), "GRANT_WRONG_ZONE");
  throwsCode(() => verifyGrant(workerRoot, bytes, expectationOf(grant, "none", grant.expiresAtMs)), "GRANT_INVALID", /revocation list/);
  throwsCode(() => verifyGrant(workerRoot, bytes, expectationOf(grant, new RevocationList(), grant.expiresAtMs)), "GRANT_EXPIRED");
});

test("v1 grants from the CA key still verify, and a v1 signature relabelled as v2 does not", async () => {
  const root = await rootPromise;
  const grant = aGrant();
  const v1 = signGrant(root, grant);
  assert.equal(v1[0], 1);
  assert.deepEqual(verifyGrant(RootCA.fromCertOnly(root.certPem), v1, expectationOf(grant, "none")), grant);
  const relabelled = Buffer.from(v1);
  relabelled[0] = 2;
  throwsCode(() => verifyGrant(root, relabelled, expectationOf(grant)), "GRANT_INVALID");
});

test("a grant from a worker's key, another cluster's manager or a manager under another root is refused", async () => {
  const root = await rootPromise;
  const grant = aGrant();
  const worker = await nodeSigner(root, "swarm-worker");
  throwsCode(() => verifyGrant(root, signGrant(worker.signer, grant), expectationOf(grant)), "GRANT_INVALID", /current manager.*CERT_WRONG_ROLE/);
  const foreign = await nodeSigner(root, "swarm-manager", { clusterId: newId() });
  throwsCode(() => verifyGrant(root, signGrant(foreign.signer, grant), expectationOf(grant)), "GRANT_INVALID", /CERT_WRONG_CLUSTER/);
  const elsewhere = await nodeSigner(await otherRootPromise, "swarm-manager");
  throwsCode(() => verifyGrant(root, signGrant(elsewhere.signer, grant), expectationOf(grant)), "GRANT_INVALID", /CERT_UNTRUSTED/);
  const short = await nodeSigner(root, "swarm-manager", { validityMs: 3600_000 });
  const lateGrant = aGrant({ expiresAtMs: NOW_MS + 3 * 3600_000 });
  throwsCode(() => verifyGrant(root, signGrant(short.signer, lateGrant), expectationOf(lateGrant, new RevocationList(), NOW_MS + 2 * 3600_000 + 60_000)), "GRANT_INVALID", /CERT_EXPIRED/);
});

test("a removed (revoked by node ID) or demoted (revoked by serial) manager's grants are refused", async () => {
  const root = await rootPromise;
  const grant = aGrant();
  const removed = await nodeSigner(root, "swarm-manager");
  const bytes = signGrant(removed.signer, grant);
  const list = new RevocationList();
  assert.deepEqual(verifyGrant(root, bytes, expectationOf(grant, list)), grant);
  list.revoke(removed.nodeId, [], new Date(NOW_MS + 90 * 86400_000), new Date(NOW_MS));
  throwsCode(() => verifyGrant(root, bytes, expectationOf(grant, list)), "GRANT_INVALID", /CERT_REVOKED/);
  const demoted = await nodeSigner(root, "swarm-manager");
  const bySerial = new RevocationList();
  bySerial.revoke(newId(), [demoted.serial], new Date(NOW_MS + 90 * 86400_000), new Date(NOW_MS));
  throwsCode(() => verifyGrant(root, signGrant(demoted.signer, grant), expectationOf(grant, bySerial)), "GRANT_INVALID", /CERT_REVOKED/);
  // A peer that cannot check revocation accepts no manager-signed grant.
  throwsCode(() => verifyGrant(root, signGrant(demoted.signer, grant), expectationOf(grant, "none")), "GRANT_INVALID", /revocation list/);
});

test("tampering with any byte, cutting or extending a manager-signed grant gives GRANT_INVALID", async () => {
  const root = await rootPromise;
  const { signer } = await nodeSigner(root, "swarm-manager");
  const grant = aGrant();
  const bytes = signGrant(signer, grant);
  for (let i = 0; i < bytes.length; i++) {
    const tampered = Buffer.from(bytes);
    tampered[i] = tampered[i]! ^ 0x01;
    throwsCode(() => verifyGrant(root, tampered, expectationOf(grant)), "GRANT_INVALID");
  }
  throwsCode(() => verifyGrant(root, bytes.subarray(0, bytes.length - 1), expectationOf(grant)), "GRANT_INVALID");
  throwsCode(() => verifyGrant(root, Buffer.concat([bytes, Buffer.from([0])]), expectationOf(grant)), "GRANT_INVALID");
  throwsCode(() => verifyGrant(root, Buffer.alloc(MAX_MANAGER_SIGNED_GRANT_BYTES + 1, 2), expectationOf(grant)), "GRANT_INVALID");
  // Another manager's certificate swapped in (same length: both are ours) does not carry the signature.
  const other = await nodeSigner(root, "swarm-manager");
  const swapped = Buffer.from(bytes);
  other.signer.certDer.copy(swapped, bytes.length - 64 - signer.certDer.length);
  if (other.signer.certDer.length === signer.certDer.length) throwsCode(() => verifyGrant(root, swapped, expectationOf(grant)), "GRANT_INVALID", /valid signature/);
});

test("a signer whose key does not belong to its certificate is refused at construction", async () => {
  const root = await rootPromise;
  const { csrPem } = await createNodeKeyAndCsr();
  const issued = root.issueNodeCertificate({ csrPem, nodeId: newId(), role: "swarm-manager", clusterId: CLUSTER, clock });
  const { privateKey } = await createNodeKeyAndCsr();
  throwsCode(() => managerGrantSigner(issued.certPem, privateKey.export({ type: "pkcs8", format: "pem" }).toString()), "INVALID_ARGUMENT");
});

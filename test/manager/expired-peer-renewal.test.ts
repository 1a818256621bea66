// The leader's checks on RenewExpiredManagerCertificate before it signs (expired-peer-renewal.ts),
// on a context whose clock the test moves: the expiry bound (one certificate validity past NotAfter),
// a certificate of another root, a worker certificate, a bad proof. The whole path, with signing, runs
// in test/e2e/expired-manager-renewal.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { isShoalError, ShoalError } from "../../src/base/errors.js";
import { createNodeKeyAndCsr, createRootCA, JoinTokenSet, signExpiredRenewalProof, type NodeRole, type RootCA } from "../../src/ca/index.js";
import type { ManagerContext } from "../../src/manager/context.js";
import { renewExpiredManagerForPeer } from "../../src/manager/caserver/expired-peer-renewal.js";
import type { Cluster } from "../../src/proto/shoal/v1/objects.js";

const HOUR_MS = 3_600_000;
const clusterId = "c".repeat(25);
const nodeId = "n".repeat(25);

async function fixture() {
  const clock = new ManualClock(Date.now());
  const root = await createRootCA({ clock });
  const tokens = JoinTokenSet.generate(root);
  const cluster = {
    id: clusterId,
    spec: { caConfig: { nodeCertExpirySeconds: 3600n } },
    rootCa: { caCertPem: Buffer.from(root.certPem), caKeyPem: Buffer.from(root.keyPem!), caDigest: root.digest(), joinTokens: tokens.toProto(), rootRotation: undefined },
  } as unknown as Cluster;
  let signed = 0;
  const ctx = {
    clusterId,
    clock,
    requireLeader: () => undefined,
    rootCA: () => root,
    store: { getCluster: () => cluster, getNode: () => undefined },
    revocation: { isRevoked: () => false },
    raft: {
      readIndex: async () => {
        signed++;
        throw new ShoalError("NO_QUORUM", "the test stops here: every check before the store passed");
      },
    },
  } as unknown as ManagerContext;
  const issue = async (ca: RootCA, role: NodeRole) => {
    const old = await createNodeKeyAndCsr();
    const certPem = ca.issueNodeCertificate({ csrPem: old.csrPem, nodeId, role, clusterId, validityMs: HOUR_MS, clock }).certPem;
    return { certPem, key: old.privateKey };
  };
  return { clock, root, tokens, ctx, issue, reachedStore: () => signed };
}

async function request(f: Awaited<ReturnType<typeof fixture>>, cert: { certPem: string; key: import("node:crypto").KeyObject }, token: string) {
  const csr = Buffer.from((await createNodeKeyAndCsr()).csrPem);
  const proof = signExpiredRenewalProof(cert.key, { clusterId, nodeId, csr });
  return renewExpiredManagerForPeer(f.ctx, { expiredCertificate: Buffer.from(cert.certPem), csr, token, proof }, () => csr);
}

test("an expired manager certificate passes the leader's checks up to one validity past its NotAfter, and not after", async () => {
  const f = await fixture();
  const cert = await f.issue(f.root, "swarm-manager");
  const managerToken = f.tokens.token("swarm-manager");
  // Expired for half an hour (the validity is 1 h): every check before the store passes.
  f.clock.advance(HOUR_MS + HOUR_MS / 2);
  await assert.rejects(request(f, cert, managerToken), (e) => isShoalError(e, "NO_QUORUM"));
  assert.equal(f.reachedStore(), 1);
  // Expired for more than one validity: refused before the store.
  f.clock.advance(HOUR_MS);
  await assert.rejects(request(f, cert, managerToken), (e) => {
    assert.ok(isShoalError(e, "CERT_EXPIRED"), String(e));
    assert.match((e as Error).message, /longer ago than the cluster's certificate validity/);
    return true;
  });
  assert.equal(f.reachedStore(), 1);
});

test("a certificate of another root, a worker certificate, a bad proof and a worker token are refused before the store", async () => {
  const f = await fixture();
  const managerToken = f.tokens.token("swarm-manager");
  const other = await createRootCA({ clock: f.clock });
  await assert.rejects(request(f, await f.issue(other, "swarm-manager"), managerToken), (e) => isShoalError(e, "CERT_UNTRUSTED"));
  await assert.rejects(request(f, await f.issue(f.root, "swarm-worker"), managerToken), (e) => isShoalError(e, "CERT_WRONG_ROLE"));
  const cert = await f.issue(f.root, "swarm-manager");
  await assert.rejects(request(f, { certPem: cert.certPem, key: (await createNodeKeyAndCsr()).privateKey }, managerToken), (e) => isShoalError(e, "UNAUTHENTICATED"));
  await assert.rejects(request(f, cert, f.tokens.token("swarm-worker")), (e) => isShoalError(e, "TOKEN_INVALID") && /worker join token/.test((e as Error).message));
  assert.equal(f.reachedStore(), 0);
  await assert.rejects(request(f, cert, managerToken), (e) => isShoalError(e, "NO_QUORUM"));
  assert.equal(f.reachedStore(), 1);
});

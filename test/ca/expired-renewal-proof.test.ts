// The proof of possession on the expired-manager renewal path (src/ca/expired-renewal-proof.ts):
// accepted only for the expired certificate's key, over the same cluster, node and CSR bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { createNodeKeyAndCsr, createRootCA, signExpiredRenewalProof, verifyExpiredRenewalProof } from "../../src/ca/index.js";

test("the proof verifies only for the certificate's key, cluster, node and exact CSR", async () => {
  const clock = new ManualClock(Date.now());
  const root = await createRootCA({ clock });
  const old = await createNodeKeyAndCsr();
  const clusterId = "c".repeat(25);
  const nodeId = "n".repeat(25);
  const cert = root.issueNodeCertificate({ csrPem: old.csrPem, nodeId, role: "swarm-manager", clusterId, validityMs: 3_600_000, clock }).certPem;
  const csr = Buffer.from((await createNodeKeyAndCsr()).csrPem);
  const proof = signExpiredRenewalProof(old.privateKey, { clusterId, nodeId, csr });
  verifyExpiredRenewalProof(cert, proof, { clusterId, nodeId, csr });

  const refused = (fn: () => void, what: string) =>
    assert.throws(fn, (e) => {
      assert.ok(isShoalError(e, "UNAUTHENTICATED"), `${what}: ${String(e)}`);
      return true;
    }, what);
  const other = await createNodeKeyAndCsr();
  refused(() => verifyExpiredRenewalProof(cert, signExpiredRenewalProof(other.privateKey, { clusterId, nodeId, csr }), { clusterId, nodeId, csr }), "another key");
  refused(() => verifyExpiredRenewalProof(cert, proof, { clusterId, nodeId, csr: Buffer.concat([csr, Buffer.from(" ")]) }), "another CSR");
  refused(() => verifyExpiredRenewalProof(cert, proof, { clusterId: "d".repeat(25), nodeId, csr }), "another cluster");
  refused(() => verifyExpiredRenewalProof(cert, proof, { clusterId, nodeId: "m".repeat(25), csr }), "another node");
  refused(() => verifyExpiredRenewalProof(cert, Buffer.alloc(0), { clusterId, nodeId, csr }), "no proof");
  refused(() => verifyExpiredRenewalProof(cert, Buffer.alloc(1024, 1), { clusterId, nodeId, csr }), "an oversized proof");
  const flipped = Buffer.from(proof);
  flipped[flipped.length - 1] ^= 1;
  refused(() => verifyExpiredRenewalProof(cert, flipped, { clusterId, nodeId, csr }), "a flipped bit");
});

// What a serving peer pays per request to check a prefetch grant: v1 (signed by the CA key, one
// ECDSA verify) against v2 (signed by the leader's node key in a cluster whose managers hold no
// root key: the signer's certificate checked against the root and the revocation list, through the
// shared verifier's cache, then one ECDSA verify). Also the signing cost and the encoded sizes.
// No target: reported for issue 11 (`shoal init --external-ca`).
// Run: node --import tsx scripts/bench/grant-verify.ts [--iterations 20000]
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import { systemClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import { createNodeKeyAndCsr, createRootCA, managerGrantSigner, RevocationList, RootCA, signGrant, verifyGrant, type GrantSigner } from "../../src/ca/index.js";
import { argNumber } from "./lib/args.js";

const iterations = argNumber("--iterations", 20_000);

async function main(): Promise<void> {
  const root = await createRootCA({ clock: systemClock });
  const clusterId = newId();
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const issued = root.issueNodeCertificate({ csrPem, nodeId: newId(), role: "swarm-manager", clusterId, clock: systemClock });
  const leader = managerGrantSigner(issued.certPem, privateKey.export({ type: "pkcs8", format: "pem" }).toString());
  const peerRoot = RootCA.fromCertOnly(root.certPem);
  // A revocation list of realistic size: 100 removed nodes with 3 serials each.
  const revocation = new RevocationList();
  for (let i = 0; i < 100; i++) revocation.revoke(newId(), ["0A" + i.toString(16).padStart(4, "0"), "0B" + i.toString(16).padStart(4, "0"), "0C" + i.toString(16).padStart(4, "0")], new Date(Date.now() + 86400_000), new Date());
  const grant = { jobId: "job-1", clusterId, zone: "default", nodeId: newId(), blobDigest: `sha256:${createHash("sha256").update("x").digest("hex")}`, expiresAtMs: Date.now() + 300_000 };
  const expect = { clusterId, zone: "default", nodeId: grant.nodeId, blobDigest: grant.blobDigest, nowMs: Date.now(), revocation };

  const measure = (signer: GrantSigner) => {
    const bytes = signGrant(signer, grant);
    for (let i = 0; i < 500; i++) verifyGrant(peerRoot, bytes, expect);
    let start = performance.now();
    for (let i = 0; i < iterations; i++) verifyGrant(peerRoot, bytes, expect);
    const verifyUs = ((performance.now() - start) * 1000) / iterations;
    const signs = Math.max(1, Math.floor(iterations / 10));
    start = performance.now();
    for (let i = 0; i < signs; i++) signGrant(signer, grant);
    const signUs = ((performance.now() - start) * 1000) / signs;
    return { bytes: bytes.length, verifyUsPerGrant: Number(verifyUs.toFixed(1)), signUsPerGrant: Number(signUs.toFixed(1)) };
  };
  const v1 = measure(root);
  const v2 = measure(leader);
  console.log(JSON.stringify({ bench: "grant-verify", iterations, v1, v2, verifyRatioV2toV1: Number((v2.verifyUsPerGrant / v1.verifyUsPerGrant).toFixed(2)) }));
}

await main();

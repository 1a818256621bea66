// Node certificates signed per second on one core (CSRs prepared in advance, signing only), and
// verifyNodeCertificate calls per second with a warm cache. Prints one JSON object.
import { createRootCA, createNodeKeyAndCsr, verifyNodeCertificate, NodeCertificateVerifier, RevocationList } from "../../src/ca/index.js";
import { systemClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import { X509Certificate } from "node:crypto";

const SIGN_SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CSR_COUNT = 200;

const root = await createRootCA({ clock: systemClock });
const csrs: string[] = [];
for (let i = 0; i < CSR_COUNT; i++) csrs.push((await createNodeKeyAndCsr()).csrPem);
const clusterId = newId();
const nodeIds = Array.from({ length: CSR_COUNT }, () => newId());

function timeLoop(seconds: number, body: (i: number) => void): { ops: number; elapsedMs: number } {
  // Warm up the JIT before measuring.
  for (let i = 0; i < 200; i++) body(i);
  const start = performance.now();
  let ops = 0;
  while (performance.now() - start < seconds * 1000) {
    for (let k = 0; k < 50; k++) body(ops++);
  }
  return { ops, elapsedMs: performance.now() - start };
}

const issued: string[] = [];
const sign = timeLoop(SIGN_SECONDS, (i) => {
  const cert = root.issueNodeCertificate({
    csrPem: csrs[i % CSR_COUNT]!,
    nodeId: nodeIds[i % CSR_COUNT]!,
    clusterId,
    role: i % 2 ? "swarm-worker" : "swarm-manager",
    zone: "default",
    clock: systemClock,
  });
  if (issued.length < CSR_COUNT) issued.push(cert.certPem);
});

// Verification as the transport does it: DER from the TLS peer certificate, a revocation list.
const ders = issued.map((pem) => new X509Certificate(pem).raw);
const revocation = new RevocationList();
for (let i = 0; i < 100; i++) revocation.revoke(newId(), ["0A" + i.toString(16).padStart(4, "0")], new Date(Date.now() + 1e9), new Date());
const warm = timeLoop(2, (i) => {
  verifyNodeCertificate(ders[i % ders.length]!, { rootCA: root, clusterId, roles: ["swarm-manager", "swarm-worker"], clock: systemClock, revocation });
});
// Cold: a verifier whose cache holds one entry, so every call parses and checks the signature.
const cold = new NodeCertificateVerifier({ maxEntries: 1 });
const coldLoop = timeLoop(2, (i) => {
  cold.verify(ders[i % ders.length]!, { rootCA: root, clusterId, clock: systemClock });
});

const perSecond = (r: { ops: number; elapsedMs: number }): number => Math.round((r.ops / r.elapsedMs) * 1000);
console.log(
  JSON.stringify({
    bench: "ca-sign",
    node: process.version,
    signSeconds: Number((sign.elapsedMs / 1000).toFixed(2)),
    certificatesSigned: sign.ops,
    signPerSecond: perSecond(sign),
    signTargetPerSecond: 1000,
    verifyWarmCachePerSecond: perSecond(warm),
    verifyColdPerSecond: perSecond(coldLoop),
  }),
);

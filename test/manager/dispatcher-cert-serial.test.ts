// The serial each agent session uses (NodeStatus.cert_serial), which a root CA rotation counts as
// done; and during a rotation, a session on an older certificate than the one last issued to the
// node (it died before writing the new one) makes the dispatcher ask it to renew. In-process manager,
// real mTLS sessions opened by the test with chosen certificates.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseNodeCertificate } from "../../src/ca/index.js";
import { CertificateStatus } from "../../src/proto/shoal/v1/objects.js";
import { rootRotationProgress } from "../../src/state/index.js";
import { waitFor } from "../e2e/cluster.js";
import { ARRIVAL_GUARD_MS, connect, joinWorker, loggedManager, renewWorker } from "./dispatcher-fixture.js";

const serialOf = (certPem: string): string => parseNodeCertificate(certPem).serial;

test("a session records the serial it uses; during a rotation, one on an older certificate than the one issued is asked to renew", { timeout: 60_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dserial-");
  const store = m.ctx.store;
  const first = await joinWorker(m, "w");
  // Joined, never renewed (no agent): holds the rotation open however fast the rest goes.
  await joinWorker(m, "holder");
  const node = () => store.getNode(first.nodeId)!;
  const a = await connect(m, first);
  t.after(() => a.close());
  await waitFor("the session's serial in the store", () => node().status?.certSerial === serialOf(first.certPem) || undefined, ARRIVAL_GUARD_MS);

  // A rotation: the worker's certificate is under the old root, so the leader marks it for renewal.
  await m.client.rotateRootCa({ caCertPem: Buffer.alloc(0), caKeyPem: Buffer.alloc(0) });
  await waitFor("the worker marked for renewal", () => node().certificate?.status === CertificateStatus.CERTIFICATE_STATUS_RENEW || undefined, ARRIVAL_GUARD_MS);
  const renewed = await renewWorker(m, first);
  assert.notEqual(serialOf(renewed.certPem), serialOf(first.certPem));
  assert.equal(node().certificate?.serial, serialOf(renewed.certPem));
  const waitingFor = (): string[] => rootRotationProgress(store.getCluster(), store.listNodes())?.waiting.map((n) => n.id) ?? [];
  assert.ok(waitingFor().includes(first.nodeId), "issued, not yet used: not done");

  // On the new certificate: recorded, done, and not asked to renew again.
  const b = await connect(m, renewed);
  t.after(() => b.close());
  await waitFor("the new serial in the store", () => node().status?.certSerial === serialOf(renewed.certPem) || undefined, ARRIVAL_GUARD_MS);
  assert.ok(!waitingFor().includes(first.nodeId), "in use: done");
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(node().certificate?.status, CertificateStatus.CERTIFICATE_STATUS_ISSUED, "a node using its new certificate is not asked again");
  b.close();

  // Back on the older certificate, as a node that died before writing the new one: asked to renew.
  const c = await connect(m, first);
  t.after(() => c.close());
  await waitFor("the node asked to renew", () => node().certificate?.status === CertificateStatus.CERTIFICATE_STATUS_RENEW || undefined, ARRIVAL_GUARD_MS);
  assert.equal(node().status?.certSerial, serialOf(first.certPem));
  assert.ok(waitingFor().includes(first.nodeId), "on the old certificate again: not done");
});

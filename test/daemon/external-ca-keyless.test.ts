// `shoal init --external-ca ... --ca-cert ROOT.pem` (issue 11): a cluster whose managers hold the
// root certificate only. In-process daemons (real gRPC over mTLS on 127.0.0.1, LevelDB in temp
// dirs) and a fake CFSSL over HTTPS (fake-cfssl.ts) that signs with a root key only the test holds:
// - init: refused without --ca-cert, with a key in it, with a signer that answers wrongly or is
//   down (the node stays unjoined); then the first manager's certificate comes from the signer;
// - a worker and a second manager join, a worker and the leader renew, all through the signer;
// - `node rm` of a worker: its certificate is refused by the managers (CERT_REVOKED);
// - a prefetch grant the leader signs is a v2 grant under its own certificate, and a worker's peer
//   side accepts it (root certificate + revocation list);
// - signer down: joins and renewals fail with EXTERNAL_CA_UNAVAILABLE, existing certificates work;
// - what needs the key is refused with CA_KEY_NOT_HELD (rotation, --no-external-ca, --renew-expired);
// - the encrypted store (raft log and snapshot, decrypted) holds no private key at all.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { systemClock, type Clock } from "../../src/base/clock.js";
import { createRootCA, normalizeSerial, RootCA, signGrant, verifyGrant } from "../../src/ca/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon, type DaemonOptions } from "../../src/daemon/daemon.js";
import { grantSignerSource } from "../../src/manager/grant-signer.js";
import { UpdateClusterRequest_Autolock } from "../../src/proto/shoal/v1/control.js";
import { NodeAvailability, NodeRole as ProtoNodeRole, type ExternalCA } from "../../src/proto/shoal/v1/objects.js";
import { decodeSnapshotEnvelope } from "../../src/raft/node/index.js";
import { EncryptedStore, RaftLogStorage, dataDirPaths, readDekFile } from "../../src/storage/index.js";
import { freePort, waitFor } from "../e2e/cluster.js";
import { channelAs, heartbeat, listNodes, readClusterFromStore } from "../e2e/identity.js";
import { fakeCfssl, tlsIdentity } from "./fake-cfssl.js";

const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };
const HOUR_MS = 3600_000;
const INIT = { autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 };

interface Started {
  daemon: Daemon;
  client: DaemonClient;
  addr: string;
  dir: string;
  stop: () => Promise<void>;
}

async function node(t: TestContext, root: string, name: string, extra: Partial<DaemonOptions> & { addr?: string } = {}, logLines?: string[]): Promise<Started> {
  const dir = join(root, name);
  const addr = extra.addr ?? `127.0.0.1:${await freePort()}`;
  const logger = logLines === undefined ? pino({ level: "silent" }) : pino({ level: "info" }, { write: (line: string) => void logLines.push(line) });
  const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger, raftTiming: FAST, heartbeatPeriodMs: 300, ...extra });
  const client = new DaemonClient(daemon.socketPath);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    client.close();
    await daemon.stop();
  };
  t.after(stop);
  return { daemon, client, addr, dir, stop };
}

function joinRequest(token: string, remoteAddr: string) {
  return { token, remoteAddr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE };
}

function certOf(n: Started): X509Certificate {
  return new X509Certificate(readFileSync(join(n.dir, "certificates/node.crt")));
}

function identityOf(n: Started): { certPem: string; keyPem: string } {
  return { certPem: readFileSync(join(n.dir, "certificates/node.crt"), "utf8"), keyPem: readFileSync(join(n.dir, "certificates/node.key"), "utf8") };
}

async function setExternalCa(client: DaemonClient, externalCa: ExternalCA | undefined): Promise<void> {
  const cluster = await client.getCluster();
  await client.updateCluster({ clusterVersion: cluster.meta?.version ?? 0n, nodeCertExpirySeconds: 0n, autolock: UpdateClusterRequest_Autolock.AUTOLOCK_UNCHANGED, updateExternalCa: true, externalCa });
}

/** Every value of a stopped manager's raft log and snapshot, decrypted (what holding the DEK reveals). */
async function decryptedStoreValues(dataDir: string): Promise<Buffer[]> {
  const paths = dataDirPaths(dataDir);
  const store = await EncryptedStore.open(paths.stateDir, await readDekFile(paths.dekFile));
  try {
    const loaded = await (await RaftLogStorage.open(store)).load();
    const values = loaded.entries.map((e) => Buffer.from(e.data));
    if (loaded.snapshot !== undefined && loaded.snapshot.metadata.index > 0) {
      values.push(Buffer.from(loaded.snapshot.data));
      const { appData } = decodeSnapshotEnvelope(loaded.snapshot.data);
      if (appData !== undefined) values.push(Buffer.from(appData));
    }
    return values;
  } finally {
    await store.close();
  }
}

test("init --external-ca: the managers never hold the root key; joins, renewals, node rm and grants work; the signer down refuses only new certificates", { timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-keyless-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = await createRootCA({ clock: systemClock });
  const rootKeyDer = createPrivateKey(root.keyPem!).export({ type: "pkcs8", format: "der" });
  const tls = tlsIdentity(dir);
  const fake = await fakeCfssl(t, root, tls);
  const externalCa: ExternalCA = { protocol: "cfssl", url: fake.url, caCertPem: Buffer.from(tls.certPem) };
  const logLines: string[] = [];
  // Snapshot often, so the scan at the end covers a snapshot as well as log entries.
  const m1 = await node(t, dir, "m1", { snapshotIntervalEntries: 20 }, logLines);

  // Refused at init, each leaving the node unjoined.
  await assert.rejects(m1.client.init({ ...INIT, externalCa }), (e) => isShoalError(e, "INVALID_ARGUMENT") && /--ca-cert/.test((e as Error).message));
  await assert.rejects(m1.client.init({ ...INIT, caCertPem: Buffer.from(root.certPem) }), (e) => isShoalError(e, "INVALID_ARGUMENT") && /--external-ca/.test((e as Error).message));
  await assert.rejects(m1.client.init({ ...INIT, externalCa, caCertPem: Buffer.from(root.certPem + root.keyPem!) }), (e) => isShoalError(e, "INVALID_ARGUMENT") && /private key/.test((e as Error).message));
  // Another root than the one the signer signs under: what it returns does not chain.
  const otherRoot = await createRootCA({ clock: systemClock });
  await assert.rejects(m1.client.init({ ...INIT, externalCa, caCertPem: Buffer.from(otherRoot.certPem) }), (e) => isShoalError(e, "EXTERNAL_CA_MISMATCH"));
  fake.state.mode = "other-cn";
  await assert.rejects(m1.client.init({ ...INIT, externalCa, caCertPem: Buffer.from(root.certPem) }), (e) => isShoalError(e, "EXTERNAL_CA_MISMATCH") && /names node/.test((e as Error).message));
  fake.state.mode = "good";
  await fake.stop();
  await assert.rejects(m1.client.init({ ...INIT, externalCa, caCertPem: Buffer.from(root.certPem) }), (e) => isShoalError(e, "EXTERNAL_CA_UNAVAILABLE"));
  assert.equal((await m1.client.info()).state, "inactive");
  await fake.start();

  const init = await m1.client.init({ ...INIT, externalCa, caCertPem: Buffer.from(root.certPem) });
  const m1Cert = certOf(m1);
  assert.equal(m1Cert.subject, `O=${init.clusterId}\nOU=swarm-manager\nCN=${init.nodeId}`);
  assert.ok(fake.state.serials.includes(normalizeSerial(m1Cert.serialNumber)), "the first manager's certificate is the signer's");
  assert.ok(m1Cert.verify(root.publicKey));
  assert.equal(readFileSync(join(m1.dir, "certificates/root-ca.crt"), "utf8"), root.certPem);
  const status = await m1.client.getRootCa();
  assert.equal(status.rootKeyHeld, false);
  assert.equal(status.root?.fingerprint, root.fingerprint);
  assert.equal(status.externalCa?.url, fake.url);
  const manager1 = m1.daemon.nodeManager!;
  assert.equal(manager1.ctx.store.getCluster()?.rootCa?.caKeyPem.length, 0, "the replicated cluster object holds no key");
  assert.equal(manager1.ctx.rootCA().canSign, false);
  const tokens = {
    worker: (await m1.client.getJoinToken({ role: ProtoNodeRole.NODE_ROLE_WORKER, rotate: false, expiresInSeconds: 0n })).token,
    manager: (await m1.client.getJoinToken({ role: ProtoNodeRole.NODE_ROLE_MANAGER, rotate: false, expiresInSeconds: 0n })).token,
  };

  // A worker and a second manager join with certificates from the signer.
  const w1 = await node(t, dir, "w1");
  const joinedW1 = await w1.client.join(joinRequest(tokens.worker, m1.addr));
  assert.equal(certOf(w1).subject, `O=${init.clusterId}\nOU=swarm-worker\nCN=${joinedW1.nodeId}`);
  assert.ok(fake.state.serials.includes(normalizeSerial(certOf(w1).serialNumber)));
  const m2 = await node(t, dir, "m2", { snapshotIntervalEntries: 20 });
  const joinedM2 = await m2.client.join(joinRequest(tokens.manager, m1.addr));
  assert.ok(fake.state.serials.includes(normalizeSerial(certOf(m2).serialNumber)));
  await waitFor("the second manager has the cluster state", async () => m2.daemon.nodeManager?.ctx.store.getCluster() !== undefined, 20_000);
  assert.equal(m2.daemon.nodeManager!.ctx.rootCA().canSign, false);

  // Renewals (a worker, and the leader itself) go to the signer.
  for (const n of [w1, m1]) {
    const before = normalizeSerial(certOf(n).serialNumber);
    await n.daemon.nodeAgent!.renewNow();
    const after = normalizeSerial(certOf(n).serialNumber);
    assert.notEqual(after, before);
    assert.ok(fake.state.serials.includes(after), "the renewed certificate is the signer's");
  }

  // The leader's grants are v2, signed by its own manager certificate; a worker's peer side accepts them.
  const leaderSigner = grantSignerSource(() => manager1.ctx.rootCA(), () => identityOf(m1))();
  const digest = `sha256:${createHash("sha256").update("layer").digest("hex")}`;
  const grant = { jobId: "job-1", clusterId: init.clusterId, zone: "default", nodeId: joinedW1.nodeId, blobDigest: digest, expiresAtMs: Date.now() + 60_000 };
  const grantBytes = signGrant(leaderSigner, grant);
  assert.equal(grantBytes[0], 2);
  const workerRevocation = w1.daemon.agentRevocation!;
  const expectation = { clusterId: init.clusterId, zone: "default", nodeId: joinedW1.nodeId, blobDigest: digest, nowMs: Date.now(), revocation: { isRevoked: (s: { nodeId: string; serial: string }) => workerRevocation.isRevoked(s.nodeId, s.serial) } };
  assert.deepEqual(verifyGrant(RootCA.fromCertOnly(root.certPem), grantBytes, expectation), grant);
  // One signed with the worker's own key is refused.
  const workerSigner = grantSignerSource(() => RootCA.fromCertOnly(root.certPem), () => identityOf(w1))();
  assert.throws(() => verifyGrant(RootCA.fromCertOnly(root.certPem), signGrant(workerSigner, grant), expectation), (e) => isShoalError(e, "GRANT_INVALID") && /CERT_WRONG_ROLE/.test((e as Error).message));

  // node rm of the worker: the managers refuse its certificate.
  const w1Identity = identityOf(w1);
  await w1.stop();
  await m1.client.removeNode({ nodeId: joinedW1.nodeId, force: true });
  const revokedChannel = channelAs(m1.addr, root.certPem, init.clusterId, w1Identity);
  t.after(() => revokedChannel.close());
  await waitFor("the removed worker's certificate refused", async () => {
    try {
      await heartbeat(revokedChannel);
      return false;
    } catch (err) {
      return isShoalError(err, "CERT_REVOKED");
    }
  }, 10_000);
  await waitFor("the removed worker on the second manager's list too", async () => m2.daemon.nodeManager!.ctx.revocation.isRevoked(joinedW1.nodeId, "00"), 10_000);

  // The signer down: a join and a renewal fail with EXTERNAL_CA_UNAVAILABLE; what exists keeps working.
  await fake.stop();
  const w2 = await node(t, dir, "w2");
  await assert.rejects(w2.client.join(joinRequest(tokens.worker, m1.addr)), (e) => isShoalError(e, "EXTERNAL_CA_UNAVAILABLE") && /cannot be reached/.test((e as Error).message));
  assert.equal((await w2.client.info()).state, "inactive");
  const m2Serial = normalizeSerial(certOf(m2).serialNumber);
  await assert.rejects(m2.daemon.nodeAgent!.renewNow(), (e) => isShoalError(e, "EXTERNAL_CA_UNAVAILABLE"));
  assert.equal(normalizeSerial(certOf(m2).serialNumber), m2Serial, "the certificate in use stays");
  const m2Channel = channelAs(m1.addr, root.certPem, init.clusterId, identityOf(m2));
  t.after(() => m2Channel.close());
  assert.ok((await listNodes(m2Channel)).nodes.some((n) => n.id === joinedM2.nodeId), "the second manager's certificate still works");
  assert.equal((await m1.client.info()).state, "active");
  const forwarded = (await m2.client.listNodes()).map((n) => n.id);
  assert.ok(forwarded.includes(init.nodeId) && forwarded.includes(joinedM2.nodeId), "control calls forwarded from the second manager still work");
  await fake.start();
  await w2.client.join(joinRequest(tokens.worker, m1.addr));

  // What needs the root key is refused, with nothing changed.
  for (const req of [{ caCertPem: Buffer.alloc(0), caKeyPem: Buffer.alloc(0) }, { caCertPem: Buffer.from(otherRoot.certPem), caKeyPem: Buffer.from(otherRoot.keyPem!) }]) {
    await assert.rejects(m1.client.rotateRootCa(req), (e) => isShoalError(e, "CA_KEY_NOT_HELD") && /cross-sign/.test((e as Error).message) && /shoal init --external-ca/.test((e as Error).message));
  }
  await assert.rejects(setExternalCa(m1.client, undefined), (e) => isShoalError(e, "CA_KEY_NOT_HELD") && /--external-ca protocol=cfssl/.test((e as Error).message));
  const after = await m1.client.getRootCa();
  assert.equal(after.rotation, undefined);
  assert.equal(after.externalCa?.url, fake.url);
  assert.equal(after.root?.fingerprint, root.fingerprint);
  assert.ok(!logLines.some((l) => l.includes("cannot render the CRL")), "no CRL is attempted without the key");
  assert.ok(logLines.every((l) => !l.includes("PRIVATE KEY")), "no key in the log");

  // The encrypted stores, decrypted: no private key of any kind, and not the root's in any form.
  await m2.stop();
  await m1.stop();
  for (const n of [m1, m2]) {
    assert.equal((await readClusterFromStore(n.dir)).rootCa?.caKeyPem.length, 0);
    const values = await decryptedStoreValues(n.dir);
    assert.ok(values.length > 10);
    for (const value of values) {
      assert.ok(!value.includes("PRIVATE KEY"), "no PEM private key in the store");
      assert.ok(!value.includes(rootKeyDer), "not the root key's DER");
      assert.ok(!value.includes(Buffer.from(root.keyPem!)), "not the root key's PEM");
    }
  }
});

/** The system clock and timers, with time read `offsetMs` ahead. */
function shiftedClock(offsetMs: number): Clock {
  return { ...systemClock, nowMs: () => Date.now() + offsetMs };
}

test("--renew-expired on a keyless last manager is refused with CA_KEY_NOT_HELD and what to do", { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-keyless-expired-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = await createRootCA({ clock: systemClock });
  const tls = tlsIdentity(dir);
  const fake = await fakeCfssl(t, root, tls);
  fake.state.validityMs = HOUR_MS;
  const m = await node(t, dir, "m");
  const init = await m.client.init({ ...INIT, certExpirySeconds: 3600n, externalCa: { protocol: "cfssl", url: fake.url, caCertPem: Buffer.from(tls.certPem) }, caCertPem: Buffer.from(root.certPem) });
  const serial = normalizeSerial(certOf(m).serialNumber);
  const addr = m.addr;
  await m.stop();
  const asked = fake.state.requests.length;
  await assert.rejects(node(t, dir, "m", { addr, clock: shiftedClock(2 * HOUR_MS), renewExpired: true }), (e) => {
    assert.ok(isShoalError(e, "CA_KEY_NOT_HELD"), String(e));
    assert.match((e as Error).message, /--renew-expired/);
    assert.match((e as Error).message, new RegExp(`CN=${init.nodeId}`));
    return true;
  });
  assert.equal(normalizeSerial(certOf(m).serialNumber), serial, "no certificate was issued");
  assert.equal(fake.state.requests.length, asked, "the signer was not asked");
});

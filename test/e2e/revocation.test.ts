// Remove and revoke (DESIGN.md §3 rules 2 and 3) against real daemons: after `node rm` every manager
// refuses the removed worker's certificate within 1 s (every RPC, and the TLS handshake on the CRL
// listener), its open stream ends, its renewal fails, and it comes back only as a new node. Also:
// a worker certificate on manager-only RPCs, another cluster's certificate and an expired one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { createNodeKeyAndCsr, loadRootCA } from "../../src/ca/index.js";
import { isShoalError } from "../../src/base/errors.js";
import { NodeRole } from "../../src/proto/shoal/v1/objects.js";
import { ProcessCluster, freePort, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";
import { channelAs, fromShoal, heartbeat, listNodes, openSession, readClusterFromStore, renew, type ClientIdentity } from "./identity.js";

function identityOf(node: NodeProcess): ClientIdentity {
  return { certPem: node.file("certificates/node.crt"), keyPem: node.file("certificates/node.key") };
}

test("a removed worker is refused everywhere within 1 s; foreign, expired and worker certificates are refused", { timeout: 150_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const peerPorts = new Map<string, number>();
  const managers: NodeProcess[] = [];
  for (const name of ["m1", "m2", "m3"]) {
    const port = await freePort();
    peerPorts.set(name, port);
    managers.push(await cluster.add(name, ["--peer-listen-addr", `127.0.0.1:${port}`]));
  }
  const [m1, m2, m3] = managers as [NodeProcess, NodeProcess, NodeProcess];
  const [w1, w2] = await Promise.all([cluster.add("w1"), cluster.add("w2")]);
  const { workerToken, managerToken } = await cluster.init("m1");
  await cluster.join("m2", managerToken, m1.addr);
  await cluster.join("m3", managerToken, m1.addr);
  await cluster.join("w1", workerToken, m1.addr);
  await cluster.join("w2", workerToken, m1.addr);
  await cluster.waitReady(m1, 5);
  await waitForVoters(m1, 3, { timeoutMs: 20_000 });
  const rootCaPem = m1.file("certificates/root-ca.crt");
  const clusterId = (await m1.info()).clusterId;
  const w1Id = (await w1!.info()).nodeId;
  const w1Identity = identityOf(w1!);
  const w2Identity = identityOf(w2!);

  // Before removal: w1's certificate is accepted by every manager (a session-less heartbeat is a handler
  // error). The connections stay open, so the timing below measures refusal, not TLS setup.
  const warm = managers.map((m) => channelAs(m.addr, rootCaPem, clusterId, w1Identity));
  for (const ch of warm) {
    await assert.rejects(heartbeat(ch), (err) => isShoalError(err) && (err.code === "NOT_FOUND" || err.code === "NOT_LEADER"));
  }
  // A stream held open with w1's certificate on the leader. One session per node: ours replaces w1's
  // own agent's, and the agent reconnecting would replace ours in turn (under load, before the rm
  // below: the stream then ended FAILED_PRECONDITION, not CERT_REVOKED). So w1 is frozen (SIGSTOP)
  // while the test holds its session, and resumed once the revocation is checked.
  w1!.pause();
  const leader = await cluster.leader();
  const streamChannel = channelAs(leader.addr, rootCaPem, clusterId, w1Identity);
  const session = openSession(streamChannel);
  assert.equal((await session.first).node?.id, w1Id);

  // Worker certificate on manager-only RPCs: refused by role.
  const w2Ch = channelAs(m2.addr, rootCaPem, clusterId, w2Identity);
  await assert.rejects(listNodes(w2Ch), (err) => isShoalError(err) && err.code === "CERT_WRONG_ROLE");
  w2Ch.close();

  // Remove w1 (it is ready, so --force) and time the refusal on every manager.
  const removedAt = Date.now();
  const rm = await m2.cli(["node", "rm", "--force", w1Id]);
  assert.equal(rm.code, 0, rm.stderr);
  const refusedAfterMs = await Promise.all(
    managers.map(async (m, i) => {
      const ch = warm[i]!;
      try {
        await waitFor(`${m.name} to refuse w1`, async () => {
          try {
            await heartbeat(ch);
            return undefined;
          } catch (err) {
            return isShoalError(err) && err.code === "CERT_REVOKED" ? true : undefined;
          }
        }, 10_000, 10); // liveness guard; the 1 s target is the reported figure
        return Date.now() - removedAt;
      } finally {
        ch.close();
      }
    }),
  );
  t.diagnostic(`managers refused the removed node after ${refusedAfterMs.join(", ")} ms (after the rm command returned)`);
  const ended = await Promise.race([session.ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000))]);
  assert.ok(ended !== undefined, "the removed node's open session stream was not ended (liveness guard: 10 s)");
  assert.equal(ended.code, "CERT_REVOKED");
  streamChannel.close();
  w1!.resume();

  // Every RPC and renewal fail; on the CRL listener the handshake itself fails.
  for (const m of managers) {
    const ch = channelAs(m.addr, rootCaPem, clusterId, w1Identity);
    const { csrPem } = await createNodeKeyAndCsr();
    await assert.rejects(renew(ch, Buffer.from(csrPem)), (err) => isShoalError(err) && err.code === "CERT_REVOKED");
    ch.close();
    const peer = channelAs(`127.0.0.1:${peerPorts.get(m.name)}`, rootCaPem, clusterId, w1Identity);
    await waitFor(`${m.name}'s CRL listener to refuse the handshake`, async () => {
      try {
        await heartbeat(peer);
        return undefined;
      } catch (err) {
        return !fromShoal(err) && isShoalError(err) && err.code === "UNAVAILABLE" ? true : undefined;
      }
    }, 1000, 20);
    peer.close();
    // Another worker still passes the CRL listener's handshake.
    const ok = channelAs(`127.0.0.1:${peerPorts.get(m.name)}`, rootCaPem, clusterId, w2Identity);
    await assert.rejects(heartbeat(ok), (err) => fromShoal(err));
    ok.close();
  }

  // The removed daemon notices, forgets the cluster, and can only come back as a new node.
  await waitFor("w1 to forget the cluster", async () => (await w1!.info()).state === "inactive" || undefined, 10_000);
  await cluster.join("w1", workerToken, m3.addr);
  const rejoined = await w1!.info();
  assert.notEqual(rejoined.nodeId, w1Id);
  assert.equal(rejoined.role, NodeRole.NODE_ROLE_WORKER);

  // Another cluster's certificate: refused on every authenticated RPC.
  const other = await cluster.add("other");
  await cluster.init("other");
  const foreign = identityOf(other);
  for (const m of managers) {
    const ch = channelAs(m.addr, rootCaPem, clusterId, foreign);
    await assert.rejects(listNodes(ch), (err) => isShoalError(err) && err.code === "UNAUTHENTICATED");
    await assert.rejects(heartbeat(ch), (err) => isShoalError(err) && err.code === "UNAUTHENTICATED");
    ch.close();
  }
  await other.stop();

  // An expired certificate of this very cluster (signed with its CA key, read from a stopped manager's store).
  await m3.stop("SIGTERM");
  const clusterObject = await readClusterFromStore(m3.dataDir);
  await m3.start();
  const rootCA = loadRootCA(Buffer.from(clusterObject.rootCa!.caCertPem).toString(), Buffer.from(clusterObject.rootCa!.caKeyPem).toString());
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const w2Id = (await w2!.info()).nodeId;
  const expired = rootCA.issueNodeCertificate({
    csrPem,
    nodeId: w2Id,
    role: "swarm-manager",
    clusterId,
    validityMs: 3600_000,
    clock: new ManualClock(Date.now() - 3 * 3600_000),
  });
  const expiredIdentity = { certPem: expired.certPem, keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
  const expiredCh = channelAs(m1.addr, rootCaPem, clusterId, expiredIdentity);
  await assert.rejects(listNodes(expiredCh), (err) => isShoalError(err) && err.code === "UNAUTHENTICATED");
  await assert.rejects(heartbeat(expiredCh), (err) => isShoalError(err) && err.code === "UNAUTHENTICATED");
  expiredCh.close();
  // The same key with a fresh certificate from the same CA would pass: the refusal above is the expiry.
  const fresh = rootCA.issueNodeCertificate({ csrPem, nodeId: w2Id, role: "swarm-worker", clusterId, clock: new ManualClock(Date.now()) });
  const freshCh = channelAs(m1.addr, rootCaPem, clusterId, { certPem: fresh.certPem, keyPem: expiredIdentity.keyPem });
  await assert.rejects(heartbeat(freshCh), (err) => isShoalError(err) && (err.code === "NOT_FOUND" || err.code === "NOT_LEADER"));
  freshCh.close();
});

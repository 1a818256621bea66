// DESIGN.md §3 rule 3 on the worker side (in-process daemons, real mTLS): after `node rm` of worker A,
// worker B's agent holds A's node ID and every serial of A within a couple of seconds (pushed with its
// session), and B's P2P peer verifier then refuses A's certificate while still accepting B's own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { normalizeSerial } from "../../src/ca/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { NodeAvailability } from "../../src/proto/shoal/v1/objects.js";
import { freePort, waitFor } from "../e2e/cluster.js";

const silent = pino({ level: "silent" });

interface Running {
  daemon: Daemon;
  client: DaemonClient;
  addr: string;
  dir: string;
}

function certDer(d: Running): Buffer {
  return new X509Certificate(readFileSync(join(d.dir, "certificates/node.crt"), "utf8")).raw;
}

test("a removed worker is on the other workers' revocation list, and their peer verifier refuses it", { timeout: 60_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-agent-rev-"));
  const nodes: Running[] = [];
  t.after(async () => {
    for (const n of nodes) {
      n.client.close();
      await n.daemon.stop();
    }
    rmSync(root, { recursive: true, force: true });
  });
  for (const name of ["m1", "a", "b"]) {
    const dir = join(root, name);
    const addr = `127.0.0.1:${await freePort()}`;
    const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger: silent, raftTiming: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 }, heartbeatPeriodMs: 300 });
    nodes.push({ daemon, client: new DaemonClient(daemon.socketPath), addr, dir });
  }
  const [m1, a, b] = nodes as [Running, Running, Running];
  const init = await m1.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  for (const w of [a, b]) await w.client.join({ token: init.workerToken, remoteAddr: m1.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  await waitFor("3 ready nodes", async () => ((await m1.client.listNodes()).filter((n) => n.status?.state === 2).length === 3) || undefined, 20_000);
  const aId = (await a.client.info()).nodeId;
  const aNode = await m1.client.getNode(aId);
  const aSerials = [...aNode.certificate!.issuedSerials, aNode.certificate!.serial].map(normalizeSerial);
  const aCert = certDer(a);
  const bCert = certDer(b);

  const bRevocation = b.daemon.agentRevocation;
  const bVerifier = b.daemon.peerVerifier;
  assert.ok(bRevocation !== undefined && bVerifier !== undefined, "worker b runs an agent");
  // Before: B accepts A as a peer of the same cluster.
  assert.equal(bVerifier(aCert).nodeId, aId);
  assert.equal(bRevocation.isNodeRevoked(aId), false);

  const removedAt = Date.now();
  await m1.client.removeNode({ nodeId: aId, force: true });
  // Liveness guard only; the time it took is reported (target: one heartbeat, well under 2 s).
  await waitFor("b's agent to hold a's revocation", () => bRevocation.isNodeRevoked(aId) || undefined, 15_000, 10);
  t.diagnostic(`b's agent held a's revocation ${Date.now() - removedAt} ms after node rm`);
  for (const serial of aSerials) assert.ok(bRevocation.isSerialRevoked(serial), `serial ${serial}`);
  assert.throws(() => bVerifier(aCert), (e) => isShoalError(e, "CERT_REVOKED"));
  // B's own certificate (and thus B itself) is unaffected.
  assert.equal(bVerifier(bCert).nodeId, (await b.client.info()).nodeId);
  assert.equal(b.daemon.currentState, "worker");
});

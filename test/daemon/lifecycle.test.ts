// The daemon's lifecycle in-process (real gRPC over mTLS on 127.0.0.1, LevelDB in temp dirs):
// refusals of init/join/leave in the wrong state, renewal at 50–80 % of the certificate's lifetime
// (a worker whose clock is past that point renews at once, one whose clock is not does not),
// leave, and the node.json / socket files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { normalizeSerial } from "../../src/ca/index.js";
import { systemClock, type Clock } from "../../src/base/clock.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { NodeAvailability, NodeRole, NodeState } from "../../src/proto/shoal/v1/objects.js";
import { freePort, waitFor } from "../e2e/cluster.js";

const silent = pino({ level: "silent" });
const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };

async function node(root: string, name: string, clock?: Clock): Promise<{ daemon: Daemon; client: DaemonClient; addr: string; dir: string }> {
  const dir = join(root, name);
  const addr = `127.0.0.1:${await freePort()}`;
  const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger: silent, raftTiming: FAST, heartbeatPeriodMs: 300, clock });
  return { daemon, client: new DaemonClient(daemon.socketPath), addr, dir };
}

const initRequest = { autolock: false, certExpirySeconds: 3600n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 };

test("lifecycle refusals, renewal at 50–80 % of the lifetime, and leave", { timeout: 60_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-daemon-"));
  const started: { daemon: Daemon; client: DaemonClient }[] = [];
  t.after(async () => {
    for (const s of started) {
      s.client.close();
      await s.daemon.stop();
    }
    rmSync(root, { recursive: true, force: true });
  });

  const m = await node(root, "m");
  started.push(m);
  assert.equal(statSync(m.daemon.socketPath).mode & 0o777, 0o600);
  assert.equal((await m.client.info()).state, "inactive");
  await assert.rejects(m.client.listNodes(), (e) => isShoalError(e, "NOT_IN_CLUSTER"));
  await assert.rejects(m.client.leave({ force: false }), (e) => isShoalError(e, "NOT_IN_CLUSTER"));
  await assert.rejects(m.client.unlock({ unlockKey: "SWMKEY-1-x" }), (e) => isShoalError(e, "FAILED_PRECONDITION"));

  const init = await m.client.init(initRequest);
  await assert.rejects(m.client.init(initRequest), (e) => isShoalError(e, "ALREADY_IN_CLUSTER"));
  const meta = JSON.parse(readFileSync(join(m.dir, "node.json"), "utf8")) as { nodeId: string; clusterId: string };
  assert.equal(meta.nodeId, init.nodeId);
  assert.equal(meta.clusterId, init.clusterId);
  assert.equal(statSync(join(m.dir, "certificates/node.key")).mode & 0o777, 0o600);
  await assert.rejects(m.client.leave({ force: false }), (e) => isShoalError(e, "FAILED_PRECONDITION") && /demote/.test((e as Error).message));

  // Worker A's clock is 50 minutes ahead: past 80 % of a 1-hour certificate, so it renews at once.
  const ahead: Clock = { ...systemClock, nowMs: () => Date.now() + 50 * 60_000 };
  const a = await node(root, "a", ahead);
  started.push(a);
  const b = await node(root, "b");
  started.push(b);
  for (const w of [a, b]) {
    await w.client.join({ token: init.workerToken, remoteAddr: m.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  }
  await assert.rejects(
    b.client.join({ token: init.workerToken, remoteAddr: m.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE }),
    (e) => isShoalError(e, "ALREADY_IN_CLUSTER"),
  );
  const serial = (w: { dir: string }): string => normalizeSerial(new X509Certificate(readFileSync(join(w.dir, "certificates/node.crt"))).serialNumber);
  const bSerial = serial(b);
  const aFirst = (await m.client.listNodes()).find((n) => n.id === (JSON.parse(readFileSync(join(a.dir, "node.json"), "utf8")) as { nodeId: string }).nodeId);
  assert.ok(aFirst?.certificate);
  await waitFor("the store to record A's second certificate", async () => {
    const n = (await m.client.listNodes()).find((x) => x.id === aFirst.id);
    return (n?.certificate?.issuedSerials.length ?? 0) >= 2 || undefined;
  }, 15_000);
  const aSerials = (await m.client.listNodes()).find((x) => x.id === aFirst.id)!.certificate!.issuedSerials;
  await waitFor("A to write its renewed certificate", () => serial(a) === aSerials[1] || undefined, 10_000);
  // Its clock still says "past 80 %" for the new certificate, but renewals are spaced: no loop.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await m.client.listNodes()).find((x) => x.id === aFirst.id)!.certificate!.issuedSerials.length, 2);
  const renewed = new X509Certificate(readFileSync(join(a.dir, "certificates/node.crt")));
  const lifetimeMs = Date.parse(renewed.validTo) - Date.parse(renewed.validFrom);
  assert.ok(Math.abs(lifetimeMs - 2 * 3600_000) < 5000, "1 h validity plus the 1 h backdate");
  // Worker B's clock is right: its certificate is far from 50 % and stays as issued.
  assert.equal(serial(b), bSerial);
  const bNode = (await m.client.listNodes()).find((x) => x.role === NodeRole.NODE_ROLE_WORKER && x.id !== aFirst.id);
  assert.equal(bNode?.certificate?.issuedSerials.length, 1);

  // A worker leaves: it forgets the cluster, and can join again as a new node.
  const bId = (await b.client.info()).nodeId;
  await b.client.leave({ force: false });
  assert.equal((await b.client.info()).state, "inactive");
  assert.equal(existsSync(join(b.dir, "certificates/node.crt")), false);
  assert.equal(existsSync(join(b.dir, "node.json")), false);
  await b.client.join({ token: init.workerToken, remoteAddr: m.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  assert.notEqual((await b.client.info()).nodeId, bId);
  // The node object it left behind stops heartbeating: the leader marks it DOWN after the TTL (3 × 300 ms).
  await waitFor("the old node to be marked down", async () => (await m.client.getNode(bId)).status?.state === NodeState.NODE_STATE_DOWN || undefined, 15_000);

  // Restart resumes the role from node.crt.
  a.client.close();
  await a.daemon.stop();
  const again = await startDaemon({ dataDir: a.dir, listenAddr: a.addr, logger: silent, raftTiming: FAST, heartbeatPeriodMs: 300 });
  const againClient = new DaemonClient(again.socketPath);
  started.push({ daemon: again, client: againClient });
  const info = await againClient.info();
  assert.equal(info.role, NodeRole.NODE_ROLE_WORKER);
  assert.equal(info.nodeId, aFirst.id);

  // The last manager leaves only with --force, and then holds no cluster state.
  await m.client.leave({ force: true });
  assert.equal((await m.client.info()).state, "inactive");
  assert.equal(existsSync(join(m.dir, "state")), false);
  assert.equal(existsSync(join(m.dir, "keys")), false);
});

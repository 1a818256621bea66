// The worker side of a zone move, with a real agent (in-process manager and worker daemons, real
// mTLS): when the store moves the worker into zone a, its agent renews at once and opens a new
// session on the reissued certificate, which is the one the dispatcher then zone-checks against.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { parseNodeCertificate } from "../../src/ca/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import { NodeAvailability } from "../../src/proto/shoal/v1/objects.js";
import { freePort, waitFor } from "../e2e/cluster.js";
import { ARRIVAL_GUARD_MS, loggedManager, setZoneLabel } from "./dispatcher-fixture.js";

interface SessionLine {
  nodeId: string;
  certZone: string;
  certSerial: string;
  msg: string;
}

test("a relabelled worker's agent opens a new session on its reissued certificate", { timeout: 90_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-drenew-");
  const root = mkdtempSync(join(tmpdir(), "shoal-drenew-w-"));
  const dir = join(root, "w");
  const worker = await startDaemon({ dataDir: dir, listenAddr: `127.0.0.1:${await freePort()}`, logger: pino({ level: "silent" }), raftTiming: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 }, heartbeatPeriodMs: 300 });
  const client = new DaemonClient(worker.socketPath);
  t.after(async () => {
    client.close();
    await worker.stop();
    rmSync(root, { recursive: true, force: true });
  });
  await client.join({ token: m.init.workerToken, remoteAddr: m.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  const nodeId = (await client.info()).nodeId;
  const sessions = (): SessionLine[] =>
    m.logLines.map((l) => JSON.parse(l) as SessionLine).filter((l) => l.msg === "agent session opened" && l.nodeId === nodeId);
  await waitFor("the worker's first session", () => sessions().length > 0, ARRIVAL_GUARD_MS);
  assert.equal(sessions()[0]!.certZone, "default");

  const movedAt = Date.now();
  await setZoneLabel(m, nodeId, "a");
  const fresh = await waitFor("a session on a zone-a certificate", () => sessions().find((s) => s.certZone === "a"), ARRIVAL_GUARD_MS);
  t.diagnostic(`new session on the zone-a certificate ${Date.now() - movedAt} ms after the relabel was proposed`);
  const onDisk = parseNodeCertificate(readFileSync(join(dir, "certificates/node.crt"), "utf8"));
  assert.equal(onDisk.zone, "a", "the worker holds the reissued certificate");
  assert.equal(fresh.certSerial, onDisk.serial, "the new session presents exactly that certificate");
});

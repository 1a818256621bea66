// PutValue with expected_index is a compare-and-set, GetValue returns the value's index, and
// GetValue is a linearizable read: a leader cut off from its quorum does not answer from its own
// state (in-process daemons, real mTLS between managers, the Control service on each socket).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { ControlClient, type GetValueResponse, type PutValueRequest, type PutValueResponse } from "../../src/proto/shoal/v1/control.js";
import { NodeAvailability } from "../../src/proto/shoal/v1/objects.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import { freePort, waitForVoters } from "../e2e/cluster.js";

const silent = pino({ level: "silent" });
const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };

interface Running {
  daemon: Daemon;
  client: DaemonClient;
  control: ControlClient;
  addr: string;
}

const callOpts = (): Partial<grpc.CallOptions> => ({ deadline: Date.now() + 15_000 });
const put = (m: Running, req: PutValueRequest): Promise<PutValueResponse> =>
  new Promise((ok, fail) => m.control.putValue(req, new grpc.Metadata(), callOpts(), (err, res) => (err ? fail(fromGrpcError(err)) : ok(res))));
const get = (m: Running, key: string): Promise<GetValueResponse> =>
  new Promise((ok, fail) => m.control.getValue({ key }, new grpc.Metadata(), callOpts(), (err, res) => (err ? fail(fromGrpcError(err)) : ok(res))));
const conflict = (e: unknown): boolean => isShoalError(e, "VERSION_CONFLICT");

test("compare-and-set by index, GetValue's index, and no stale read from a leader without quorum", { timeout: 90_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-kv-cas-"));
  const running: Running[] = [];
  t.after(async () => {
    for (const m of running) {
      m.control.close();
      m.client.close();
      await m.daemon.stop();
    }
    rmSync(root, { recursive: true, force: true });
  });
  for (const name of ["m1", "m2", "m3"]) {
    const addr = `127.0.0.1:${await freePort()}`;
    const daemon = await startDaemon({ dataDir: join(root, name), listenAddr: addr, logger: silent, raftTiming: FAST, heartbeatPeriodMs: 300 });
    const control = new ControlClient(`unix://${daemon.socketPath}`, grpc.credentials.createInsecure());
    running.push({ daemon, client: new DaemonClient(daemon.socketPath), control, addr });
  }
  const [m1, m2, m3] = running as [Running, Running, Running];
  const init = await m1.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  for (const m of [m2, m3]) await m.client.join({ token: init.managerToken, remoteAddr: m1.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE });
  await waitForVoters(m1, 3, { timeoutMs: 30_000 });

  // Through a follower's socket (forwarded) and the leader's alike.
  assert.deepEqual(await get(m2, "k"), { found: false, value: Buffer.alloc(0), index: 0n });
  await assert.rejects(put(m2, { key: "k", value: Buffer.from("a"), expectedIndex: 5n }), conflict, "CAS on a missing key");
  const a = await put(m2, { key: "k", value: Buffer.from("a"), expectedIndex: 0n });
  await assert.rejects(put(m3, { key: "k", value: Buffer.from("x"), expectedIndex: 0n }), conflict, "must-not-exist on an existing key");
  const readA = await get(m3, "k");
  assert.equal(readA.index, a.index);
  assert.equal(Buffer.from(readA.value).toString(), "a");
  const b = await put(m1, { key: "k", value: Buffer.from("b"), expectedIndex: readA.index });
  assert.ok(b.index > a.index);
  await assert.rejects(put(m2, { key: "k", value: Buffer.from("c"), expectedIndex: a.index }), (e) => conflict(e) && /changed by someone else/.test((e as Error).message), "CAS on a stale index");
  const readB = await get(m1, "k");
  assert.equal(Buffer.from(readB.value).toString(), "b", "the lost CAS wrote nothing");
  assert.equal(readB.index, b.index);
  const blind = await put(m3, { key: "k", value: Buffer.from("d") });
  assert.equal((await get(m2, "k")).index, blind.index, "a put without expected_index is unconditional");

  // Cut the leader off: it must not serve a read from its own state, which may already be stale.
  const leaderId = (await m1.client.info()).leaderNodeId;
  const leader = (await Promise.all(running.map(async (m) => ((await m.client.info()).nodeId === leaderId ? m : undefined)))).find((m) => m !== undefined)!;
  for (const m of running.filter((r) => r !== leader)) {
    m.control.close();
    m.client.close();
    await m.daemon.stop();
    running.splice(running.indexOf(m), 1);
  }
  await assert.rejects(get(leader, "k"), (e) => isShoalError(e) && ["NO_QUORUM", "TIMEOUT", "NOT_LEADER", "UNAVAILABLE"].includes(e.code), "a read without a quorum");
});

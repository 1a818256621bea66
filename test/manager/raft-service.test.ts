// The Raft service between managers (in-process daemons, real mTLS): only manager certificates reach
// it, a manager cannot speak for another manager's raft ID, malformed and oversized batches are
// refused, and a follower's control calls reach the leader (forwarded with its own certificate).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { unaryCall } from "../../src/transport/client.js";
import { NodeAvailability, NodeRole } from "../../src/proto/shoal/v1/objects.js";
import { RaftClient, RaftMessageType, type RaftAck, RaftMessage } from "../../src/proto/shoal/v1/raft.js";
import { freePort, waitFor, waitForVoters } from "../e2e/cluster.js";
import { channelAs } from "../e2e/identity.js";

const silent = pino({ level: "silent" });
const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };

function message(from: bigint, to: bigint): RaftMessage {
  return RaftMessage.fromPartial({ type: RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT, to, from, term: 1n });
}

test("raft service: manager certificates only, no speaking for another member, bounded batches; followers forward control calls", { timeout: 120_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-raftsvc-"));
  const daemons: { daemon: Daemon; client: DaemonClient; addr: string; dir: string }[] = [];
  t.after(async () => {
    for (const d of daemons) {
      d.client.close();
      await d.daemon.stop();
    }
    rmSync(root, { recursive: true, force: true });
  });
  for (const name of ["m1", "m2", "w1"]) {
    const dir = join(root, name);
    const addr = `127.0.0.1:${await freePort()}`;
    const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger: silent, raftTiming: FAST, heartbeatPeriodMs: 300 });
    daemons.push({ daemon, client: new DaemonClient(daemon.socketPath), addr, dir });
  }
  const [m1, m2, w1] = daemons as [(typeof daemons)[0], (typeof daemons)[0], (typeof daemons)[0]];
  const init = await m1.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  const join1 = { remoteAddr: m1.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE };
  await m2.client.join({ token: init.managerToken, ...join1 });
  await w1.client.join({ token: init.workerToken, ...join1 });
  await waitForVoters(m1, 2, { timeoutMs: 15_000 });
  const nodes = await m1.client.listNodes();
  const raftIdOf = (nodeId: string): bigint => nodes.find((n) => n.id === nodeId)!.managerStatus!.raftId;
  const m1Raft = raftIdOf(init.nodeId);
  const m2Info = await m2.client.info();
  const m2Raft = raftIdOf(m2Info.nodeId);
  const rootCaPem = readFileSync(join(m1.dir, "certificates/root-ca.crt"), "utf8");
  const identity = (d: { dir: string }) => ({ certPem: readFileSync(join(d.dir, "certificates/node.crt"), "utf8"), keyPem: readFileSync(join(d.dir, "certificates/node.key"), "utf8") });
  const send = (ch: ReturnType<typeof channelAs>, messages: RaftMessage[]): Promise<RaftAck> =>
    unaryCall<RaftAck>((cb) => ch.client(RaftClient).processRaftMessages({ messages, senderAddr: "" }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));

  // A worker certificate never reaches the raft service.
  const asWorker = channelAs(m1.addr, rootCaPem, init.clusterId, identity(w1));
  await assert.rejects(send(asWorker, [message(m2Raft, m1Raft)]), (e) => isShoalError(e, "CERT_WRONG_ROLE"));
  asWorker.close();

  // m2's certificate may speak for m2's raft ID, not for m1's (sent to m1 itself) or anyone else's.
  const asM2 = channelAs(m1.addr, rootCaPem, init.clusterId, identity(m2));
  await send(asM2, [message(m2Raft, m1Raft)]);
  await assert.rejects(send(asM2, [message(m1Raft, m1Raft)]), (e) => isShoalError(e, "PERMISSION_DENIED"));
  // Malformed (unknown type) and oversized batches.
  await assert.rejects(send(asM2, [{ ...message(m2Raft, m1Raft), type: 42 as RaftMessageType }]), (e) => isShoalError(e, "INVALID_ARGUMENT"));
  await assert.rejects(send(asM2, Array.from({ length: 3000 }, () => message(m2Raft, m1Raft))), (e) => isShoalError(e, "MESSAGE_TOO_LARGE"));
  asM2.close();

  // The cluster is unharmed, and the follower's socket reaches the leader for reads and writes.
  const follower = (await m1.client.info()).leaderNodeId === init.nodeId ? m2 : m1;
  const label = await follower.client.updateNode({
    nodeId: m2Info.nodeId,
    nodeVersion: (await follower.client.getNode(m2Info.nodeId)).meta!.version,
    spec: { ...(await follower.client.getNode(m2Info.nodeId)).spec!, labels: { team: "a" } },
  });
  assert.equal(label.spec?.labels["team"], "a");
  assert.equal((await m2.client.getNode(m2Info.nodeId)).spec?.labels["team"], "a");

  // Demoting the leader itself (asked on its own socket): it hands over and becomes a worker.
  const leaderDaemon = (await m1.client.info()).leaderNodeId === init.nodeId ? m1 : m2;
  const other = leaderDaemon === m1 ? m2 : m1;
  const leaderId = (await leaderDaemon.client.info()).nodeId;
  const current = await leaderDaemon.client.getNode(leaderId);
  const demoted = await leaderDaemon.client.updateNode({ nodeId: leaderId, nodeVersion: current.meta!.version, spec: { ...current.spec!, desiredRole: NodeRole.NODE_ROLE_WORKER } });
  assert.equal(demoted.managerStatus, undefined);
  await waitFor("the other manager to lead alone", async () => {
    const info = await other.client.info();
    return (info.leaderNodeId === info.nodeId && info.managers.length === 1) || undefined;
  }, 15_000);
  // Liveness guard only: the old leader's agent first finds the new leader, then renews.
  const demotedAt = Date.now();
  await waitFor("the old leader to hold a worker certificate", async () => (await leaderDaemon.client.info()).role === NodeRole.NODE_ROLE_WORKER || undefined, 45_000);
  t.diagnostic(`demoted leader → worker certificate: ${Date.now() - demotedAt} ms`);
});

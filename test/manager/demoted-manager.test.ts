// A demoted manager's old certificate (OU swarm-manager, valid for up to 90 days) must stop working on
// the manager-only RPCs at once (in-process daemons, real mTLS): every manager checks the node's
// current role in its store on every such call, and once the demoted node's worker certificate is
// issued the serials of its earlier certificates are revoked (not its node ID: it stays a worker).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { isShoalError } from "../../src/base/errors.js";
import { normalizeSerial } from "../../src/ca/index.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon, type Daemon } from "../../src/daemon/daemon.js";
import { unaryCall, type SecureChannel } from "../../src/transport/client.js";
import { NodeAvailability, NodeRole, NodeState } from "../../src/proto/shoal/v1/objects.js";
import { RaftClient, RaftMembershipClient, RaftMessageType, type JoinRaftResponse, type RaftAck, RaftMessage } from "../../src/proto/shoal/v1/raft.js";
import { freePort, waitFor, waitForVoters } from "../e2e/cluster.js";
import { channelAs, heartbeat, listNodes, type ClientIdentity } from "../e2e/identity.js";
import { retryOnVersionConflict } from "../../src/cli/retry.js";

const silent = pino({ level: "silent" });
const FAST = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 };

interface Running {
  name: string;
  daemon: Daemon;
  client: DaemonClient;
  addr: string;
  dir: string;
}

function heartbeatMessage(from: bigint, to: bigint): RaftMessage {
  return RaftMessage.fromPartial({ type: RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT, to, from, term: 1n });
}

const deadline = (): Partial<grpc.CallOptions> => ({ deadline: Date.now() + 5000 });
const raftCall = (ch: SecureChannel, from: bigint, to: bigint): Promise<RaftAck> =>
  unaryCall<RaftAck>((cb) => ch.client(RaftClient).processRaftMessages({ messages: [heartbeatMessage(from, to)], senderAddr: "" }, new grpc.Metadata(), deadline(), cb));
const joinRaftCall = (ch: SecureChannel, addr: string): Promise<JoinRaftResponse> =>
  unaryCall<JoinRaftResponse>((cb) => ch.client(RaftMembershipClient).join({ addr }, new grpc.Metadata(), deadline(), cb));

function identityOf(d: Running): ClientIdentity {
  return { certPem: readFileSync(join(d.dir, "certificates/node.crt"), "utf8"), keyPem: readFileSync(join(d.dir, "certificates/node.key"), "utf8") };
}

function serialOf(identity: ClientIdentity): string {
  return normalizeSerial(new X509Certificate(identity.certPem).serialNumber);
}

/** A read-modify-write, redone when the node changed in between (its status moves under load). */
async function demote(via: Running, nodeId: string): Promise<void> {
  await retryOnVersionConflict(`demoting ${nodeId}`, async () => {
    const current = await via.client.getNode(nodeId);
    await via.client.updateNode({ nodeId, nodeVersion: current.meta!.version, spec: { ...current.spec!, desiredRole: NodeRole.NODE_ROLE_WORKER } });
  });
}

test("a demoted manager's old certificate is refused on every manager-only RPC of every manager", { timeout: 90_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "shoal-demoted-"));
  const daemons: Running[] = [];
  t.after(async () => {
    for (const d of daemons) {
      d.client.close();
      await d.daemon.stop();
    }
    rmSync(root, { recursive: true, force: true });
  });
  for (const name of ["m1", "m2", "m3", "m4"]) {
    const dir = join(root, name);
    const addr = `127.0.0.1:${await freePort()}`;
    const daemon = await startDaemon({ dataDir: dir, listenAddr: addr, logger: silent, raftTiming: FAST, heartbeatPeriodMs: 300 });
    daemons.push({ name, daemon, client: new DaemonClient(daemon.socketPath), addr, dir });
  }
  const [m1, m2, m3, m4] = daemons as [Running, Running, Running, Running];
  const init = await m1.client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
  const joinVia = { remoteAddr: m1.addr, advertiseAddr: "", availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE };
  for (const m of [m2, m3, m4]) await m.client.join({ token: init.managerToken, ...joinVia });
  await waitForVoters(m1, 4, { timeoutMs: 30_000 });
  const rootCaPem = readFileSync(join(m1.dir, "certificates/root-ca.crt"), "utf8");
  const idOf = async (d: Running): Promise<string> => (await d.client.info()).nodeId;
  const raftIdOf = async (nodeId: string): Promise<bigint> => (await m1.client.getNode(nodeId)).managerStatus!.raftId;
  const m1Raft = await raftIdOf(init.nodeId);

  // (a) m3 is down, so it never renews: only the store's current role can refuse its manager certificate.
  const m3Id = await idOf(m3);
  const m3Raft = await raftIdOf(m3Id);
  const m3Old = identityOf(m3);
  m3.client.close();
  await m3.daemon.stop();
  daemons.splice(daemons.indexOf(m3), 1);
  // Before the demotion the certificate passes the role checks (a follower answers with a leader redirect).
  const before = channelAs(m2.addr, rootCaPem, init.clusterId, m3Old);
  await listNodes(before).then(
    (res) => assert.ok(res.nodes.length >= 4),
    (err) => assert.ok(isShoalError(err, "NOT_LEADER"), String(err)),
  );
  before.close();
  await demote(m1, m3Id);
  await waitFor("m3 out of raft", async () => (await m1.client.getNode(m3Id)).managerStatus === undefined || undefined, 15_000);
  for (const m of [m1, m2, m4]) {
    const ch = channelAs(m.addr, rootCaPem, init.clusterId, m3Old);
    try {
      await waitFor(`${m.name} to refuse m3's manager certificate`, async () => {
        try {
          await listNodes(ch);
          return undefined;
        } catch (err) {
          return isShoalError(err, "CERT_WRONG_ROLE") || undefined;
        }
      }, 5000, 20);
      await assert.rejects(listNodes(ch), (e) => isShoalError(e, "CERT_WRONG_ROLE"), `${m.name}: control`);
      await assert.rejects(raftCall(ch, m3Raft, m1Raft), (e) => isShoalError(e, "CERT_WRONG_ROLE"), `${m.name}: raft`);
      await assert.rejects(joinRaftCall(ch, "127.0.0.1:1"), (e) => isShoalError(e, "CERT_WRONG_ROLE"), `${m.name}: membership`);
      // The dispatcher and renewal stay open to it: it is still a node of the cluster, now a worker.
      await assert.rejects(heartbeat(ch), (e) => isShoalError(e) && (e.code === "NOT_FOUND" || e.code === "NOT_LEADER"));
    } finally {
      ch.close();
    }
  }

  // (b) m4 is up: it renews as a worker, and then the serial of its manager certificate is revoked on
  // every listener while its node ID is not (its new worker certificate keeps working).
  const m4Id = await idOf(m4);
  const m4Old = identityOf(m4);
  await demote(m2, m4Id);
  await waitFor("m4 to hold a worker certificate", async () => (await m4.client.info()).role === NodeRole.NODE_ROLE_WORKER || undefined, 20_000);
  const m4New = identityOf(m4);
  assert.notEqual(serialOf(m4New), serialOf(m4Old));
  const entry = await waitFor("m4's manager serial on the replicated list", async () => {
    const found = (await m1.client.getCluster()).revocationList?.nodes.find((n) => n.nodeId === m4Id);
    return found?.serials.map(normalizeSerial).includes(serialOf(m4Old)) ? found : undefined;
  }, 10_000);
  assert.ok(!entry.serials.map(normalizeSerial).includes(serialOf(m4New)));
  for (const m of [m1, m2]) {
    const old = channelAs(m.addr, rootCaPem, init.clusterId, m4Old);
    const fresh = channelAs(m.addr, rootCaPem, init.clusterId, m4New);
    try {
      await waitFor(`${m.name} to refuse m4's old serial`, async () => {
        try {
          await heartbeat(old);
          return undefined;
        } catch (err) {
          return isShoalError(err, "CERT_REVOKED") || undefined;
        }
      }, 5000, 20);
      await assert.rejects(listNodes(old), (e) => isShoalError(e, "CERT_REVOKED"));
      await assert.rejects(listNodes(fresh), (e) => isShoalError(e, "CERT_WRONG_ROLE"));
      await assert.rejects(heartbeat(fresh), (e) => isShoalError(e) && (e.code === "NOT_FOUND" || e.code === "NOT_LEADER"));
    } finally {
      old.close();
      fresh.close();
    }
  }
  // m4 carries on as a worker with a session (READY), and node ls still lists it.
  await waitFor("m4 ready as a worker", async () => {
    const node = await m1.client.getNode(m4Id);
    return (node.role === NodeRole.NODE_ROLE_WORKER && node.status?.state === NodeState.NODE_STATE_READY) || undefined;
  }, 15_000);
  await waitFor("2 managers left", async () => (await m1.client.info()).managers.length === 2 || undefined, 15_000);
});

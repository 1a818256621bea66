// Hostile input against a running cluster: garbage bytes on the TLS port and on the control socket,
// oversized messages, and absurd field values over gRPC. Each gets a clear refusal and the daemons
// stay up. Also a manager joining after log compaction catches up through chunked snapshots.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { isShoalError, type ShoalError } from "../../src/base/errors.js";
import { createJoinChannel, unaryCall } from "../../src/transport/client.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import { CAClient, type IssueNodeCertificateResponse } from "../../src/proto/shoal/v1/ca.js";
import { ControlClient, type UpdateClusterRequest_Autolock } from "../../src/proto/shoal/v1/control.js";
import { RaftClient, type RaftAck } from "../../src/proto/shoal/v1/raft.js";
import { NodeRole, ServiceSpec } from "../../src/proto/shoal/v1/objects.js";
import { ProcessCluster, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";
import { channelAs } from "./identity.js";

function sendRaw(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect(port, "127.0.0.1", () => socket.end(bytes));
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
    socket.setTimeout(2000, () => socket.destroy());
  });
}

function sendRawUnix(path: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect(path, () => socket.end(bytes));
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
    socket.setTimeout(2000, () => socket.destroy());
  });
}

function sendTlsGarbage(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ port, host: "127.0.0.1", rejectUnauthorized: false, ALPNProtocols: ["h2"] }, () => socket.end(bytes));
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
    socket.setTimeout(2000, () => socket.destroy());
  });
}

function socketControl(node: NodeProcess): ControlClient {
  return new ControlClient(`unix://${node.socketPath}`, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": 64 * 1024 * 1024,
  });
}

function call<T>(fn: (cb: (err: grpc.ServiceError | null, value?: T) => void) => unknown): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(fromGrpcError(err)) : resolve(value as T))));
}

const code = (expected: string | string[]) => (err: unknown): boolean => {
  assert.ok(isShoalError(err), String(err));
  const list = Array.isArray(expected) ? expected : [expected];
  assert.ok(list.includes((err as ShoalError).code), `${(err as ShoalError).code}: ${(err as Error).message}`);
  assert.ok((err as Error).message.length > 10, "the refusal says what is wrong");
  return true;
};

test("garbage, oversized and absurd input is refused clearly and the daemons stay up; a late joiner catches up by snapshot", { timeout: 120_000 }, async (t) => {
  const cluster = new ProcessCluster(["--raft-tick-ms", "20", "--heartbeat-period-ms", "300", "--snapshot-interval", "50"]);
  t.after(() => cluster.close());
  const [m1, m2, w1] = await Promise.all(["m1", "m2", "w1"].map((n) => cluster.add(n)));
  const { workerToken, managerToken } = await cluster.init("m1");
  await cluster.join("m2", managerToken, m1!.addr);
  await cluster.join("w1", workerToken, m1!.addr);
  const rootCaPem = m1!.file("certificates/root-ca.crt");
  const clusterId = (await m1!.info()).clusterId;

  // Garbage on the TLS port (before and after a TLS handshake) and on the control socket.
  for (let i = 0; i < 5; i++) {
    await sendRaw(m1!.port, randomBytes(4096));
    await sendTlsGarbage(m1!.port, randomBytes(8192));
    await sendRawUnix(m1!.socketPath, randomBytes(4096));
    await sendRawUnix(m1!.socketPath, Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  }

  // Oversized: a 20 MiB PutValue on the socket, and a 20 MiB CSR over TLS.
  const control = socketControl(m1!);
  t.after(() => control.close());
  await assert.rejects(call((cb) => control.putValue({ key: "big", value: Buffer.alloc(20 * 1024 * 1024) }, cb)), code(["MESSAGE_TOO_LARGE", "INTERNAL"]));
  const join = createJoinChannel(m1!.addr, rootCaPem, { maxReceiveMessageBytes: 1024 * 1024 });
  t.after(() => join.close());
  const joinCa = join.client(CAClient);
  const bigCa = new CAClient(m1!.addr, grpc.credentials.createSsl(Buffer.from(rootCaPem)), {
    "grpc.ssl_target_name_override": "swarm-manager",
    "grpc.max_send_message_length": 64 * 1024 * 1024,
  });
  t.after(() => bigCa.close());
  await assert.rejects(call((cb) => bigCa.issueNodeCertificate({ csr: Buffer.alloc(20 * 1024 * 1024), token: workerToken, availability: 0, hostname: "", addr: "" }, cb)), code(["MESSAGE_TOO_LARGE", "INTERNAL"]));

  // Absurd values over the socket.
  await assert.rejects(call((cb) => control.getNode({ nodeId: "x".repeat(100_000) }, cb)), code("INVALID_ARGUMENT"));
  await assert.rejects(call((cb) => control.putValue({ key: "k".repeat(300), value: Buffer.alloc(1) }, cb)), code("INVALID_ARGUMENT"));
  await assert.rejects(call((cb) => control.putValue({ key: "", value: Buffer.alloc(1) }, cb)), code("INVALID_ARGUMENT"));
  await assert.rejects(call((cb) => control.putValue({ key: "v", value: Buffer.alloc(100 * 1024) }, cb)), code("INVALID_ARGUMENT"));
  await assert.rejects(
    call((cb) => control.updateCluster({ clusterVersion: 0n, nodeCertExpirySeconds: 2n ** 63n, autolock: 0, updateExternalCa: false, externalCa: undefined }, cb)),
    code("INVALID_ARGUMENT"),
  );
  await assert.rejects(call((cb) => control.updateCluster({ clusterVersion: 0n, nodeCertExpirySeconds: 5n, autolock: 0, updateExternalCa: false, externalCa: undefined }, cb)), code("INVALID_ARGUMENT"));
  await assert.rejects(call((cb) => control.updateCluster({ clusterVersion: 0n, nodeCertExpirySeconds: 0n, autolock: 99 as UpdateClusterRequest_Autolock, updateExternalCa: false, externalCa: undefined }, cb)), code("INVALID_ARGUMENT"));
  await assert.rejects(
    call((cb) => control.getJoinToken({ role: NodeRole.NODE_ROLE_WORKER, rotate: true, expiresInSeconds: 2n ** 62n }, cb)),
    code("INVALID_ARGUMENT"),
  );
  await assert.rejects(call((cb) => control.getJoinToken({ role: 77 as NodeRole, rotate: false, expiresInSeconds: 0n }, cb)), code("INVALID_ARGUMENT"));
  await assert.rejects(
    call((cb) => control.createService({ spec: ServiceSpec.fromPartial({ name: "s", replicas: 2 ** 31 }) }, cb)),
    code("INVALID_ARGUMENT"),
  );
  await assert.rejects(
    call((cb) => control.updateNode({ nodeId: (`0`.repeat(25)), nodeVersion: 1n, spec: { desiredRole: 9 as NodeRole, availability: 0, labels: {} } }, cb)),
    code(["INVALID_ARGUMENT", "NOT_FOUND"]),
  );
  await assert.rejects(call((cb) => control.removeNode({ nodeId: "../../etc", force: true }, cb)), code("INVALID_ARGUMENT"));

  // Absurd values over TLS: CA bootstrap without a certificate, and raft garbage from a manager.
  await assert.rejects(
    unaryCall<IssueNodeCertificateResponse>((cb) =>
      joinCa.issueNodeCertificate({ csr: randomBytes(500), token: workerToken, availability: 0, hostname: "h", addr: "" }, new grpc.Metadata(), {}, cb),
    ),
    code("CSR_INVALID"),
  );
  await assert.rejects(
    unaryCall<IssueNodeCertificateResponse>((cb) =>
      joinCa.issueNodeCertificate({ csr: Buffer.from("x"), token: workerToken, availability: 0, hostname: "h".repeat(10_000), addr: "" }, new grpc.Metadata(), {}, cb),
    ),
    code("INVALID_ARGUMENT"),
  );
  await assert.rejects(
    unaryCall<IssueNodeCertificateResponse>((cb) =>
      joinCa.issueNodeCertificate({ csr: Buffer.from("x"), token: "SWMTKN-1-" + "z".repeat(500), availability: 0, hostname: "h", addr: "" }, new grpc.Metadata(), {}, cb),
    ),
    code("TOKEN_MALFORMED"),
  );
  const managerIdentity = { certPem: m2!.file("certificates/node.crt"), keyPem: m2!.file("certificates/node.key") };
  const asManager = channelAs(m1!.addr, rootCaPem, clusterId, managerIdentity);
  t.after(() => asManager.close());
  const raft = asManager.client(RaftClient);
  await assert.rejects(
    unaryCall<RaftAck>((cb) =>
      raft.processRaftMessages(
        { messages: [{ type: 99 as never, to: 1n, from: 2n, term: 2n ** 63n, logTerm: 0n, index: 0n, entries: [], commit: 0n, reject: false, rejectHint: 0n, context: Buffer.alloc(0), snapshot: undefined, snapshotOffset: 0n, snapshotChunk: Buffer.alloc(0), snapshotDone: false, snapshotTotalBytes: 0n }], senderAddr: "" },
        new grpc.Metadata(),
        {},
        cb,
      ),
    ),
    code(["INVALID_ARGUMENT", "PERMISSION_DENIED"]),
  );

  // Everything still answers, and nothing was harmed.
  for (const n of [m1!, m2!, w1!]) {
    assert.ok(n.running, `${n.name} died`);
    assert.notEqual((await n.info()).nodeId, "");
  }
  assert.equal((await m1!.client.listNodes()).length, 3);

  // Snapshots: after enough writes the log is compacted, and a new manager catches up from StreamSnapshot chunks.
  const writers = Array.from({ length: 16 }, (_, w) => (async () => {
    const c = m1!.newControlClient();
    for (let i = w; i < 640; i += 16) await m1!.putValue(`fill-${i}`, Buffer.alloc(1000, i % 256), 10_000, c);
    c.close();
  })());
  await Promise.all(writers);
  const m3 = await cluster.add("m3", ["--snapshot-interval", "50"]);
  await cluster.join("m3", managerToken, m2!.addr);
  await waitForVoters(m1!, 3, { what: "m3 to be a voter", timeoutMs: 30_000 });
  await waitFor("m3 to log the snapshot it received", () => m3.readLog().includes("received a raft snapshot") || undefined, 10_000);
  await m1!.stop("SIGKILL");
  await waitFor("m2 or m3 to lead", async () => ((await m3.info()).leaderNodeId !== "" ? true : undefined), 15_000);
  assert.equal((await m3.getValue("fill-350"))?.[0], 350 % 256);
});

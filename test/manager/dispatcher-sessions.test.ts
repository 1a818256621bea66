// One dispatcher session per node (in-process daemon, real mTLS): a node's new session replaces its
// older one, which ends with FAILED_PRECONDITION and whose session ID no longer heartbeats, so a
// node (or a stolen certificate) cannot pile up sessions on the leader; the newest one keeps working.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { isShoalError, type ShoalError } from "../../src/base/errors.js";
import { createNodeKeyAndCsr } from "../../src/ca/index.js";
import { CAClient, type IssueNodeCertificateResponse, type NodeCertificateStatusResponse } from "../../src/proto/shoal/v1/ca.js";
import { CertificateStatus, NodeAvailability } from "../../src/proto/shoal/v1/objects.js";
import { createJoinChannel, unaryCall, type SecureChannel } from "../../src/transport/client.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import { DispatcherClient, type HeartbeatResponse, type SessionMessage } from "../../src/proto/shoal/v1/dispatcher.js";

import { channelAs } from "../e2e/identity.js";
import { singleManager } from "./single-manager.js";

/** Liveness guard: a replaced session ends within milliseconds; this only stops a hung test. */
const END_GUARD_MS = 10_000;

interface OpenSession {
  id: string;
  ended: Promise<ShoalError | "still open">;
  cancel(): void;
}

async function openSession(ch: SecureChannel): Promise<OpenSession> {
  const stream = ch.client(DispatcherClient).session({ description: { hostname: "h", platform: "linux/x64", engineVersion: "", engineLabels: {}, executors: [], resources: undefined }, addr: "" });
  let endedResolve!: (v: ShoalError | "still open") => void;
  const ended = new Promise<ShoalError | "still open">((r) => (endedResolve = r));
  const first = new Promise<SessionMessage>((resolve, reject) => {
    stream.once("data", resolve);
    stream.on("error", (err) => {
      const e = fromGrpcError(err);
      reject(e);
      endedResolve(e);
    });
  });
  const msg = await first;
  return {
    id: msg.sessionId,
    ended: Promise.race([ended, new Promise<"still open">((r) => setTimeout(() => r("still open"), END_GUARD_MS).unref())]),
    cancel: () => stream.cancel(),
  };
}

/** A worker identity issued through the real join (no agent runs for it, so only this test opens its sessions). */
async function joinWorker(addr: string, rootCaPem: string, token: string): Promise<{ certPem: string; keyPem: string }> {
  const { privateKey, csrPem } = await createNodeKeyAndCsr();
  const ch = createJoinChannel(addr, rootCaPem);
  try {
    const ca = ch.client(CAClient);
    const issued = await unaryCall<IssueNodeCertificateResponse>((cb) =>
      ca.issueNodeCertificate(
        { csr: Buffer.from(csrPem), token, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, hostname: "w", addr: "" },
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        cb,
      ),
    );
    for (;;) {
      const status = await unaryCall<NodeCertificateStatusResponse>((cb) => ca.nodeCertificateStatus({ nodeId: issued.nodeId }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
      if (status.status === CertificateStatus.CERTIFICATE_STATUS_ISSUED && status.certificate.length > 0) {
        return { certPem: Buffer.from(status.certificate).toString("utf8"), keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    ch.close();
  }
}

function heartbeat(ch: SecureChannel, sessionId: string): Promise<HeartbeatResponse> {
  return unaryCall<HeartbeatResponse>((cb) => ch.client(DispatcherClient).heartbeat({ sessionId }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
}

test("a node's new session replaces its older one", { timeout: 60_000 }, async (t) => {
  const { dir, addr, daemon, client, init } = await singleManager(t, "shoal-dsess-");
  const rootCaPem = readFileSync(join(dir, "certificates/root-ca.crt"), "utf8");
  // Not the manager's own identity: its agent holds that node's session and would replace ours.
  const identity = await joinWorker(addr, rootCaPem, init.workerToken);
  const ch = channelAs(addr, rootCaPem, init.clusterId, identity);
  t.after(() => ch.close());

  const opened: OpenSession[] = [];
  for (let i = 0; i < 20; i++) opened.push(await openSession(ch));
  t.after(() => opened.forEach((s) => s.cancel()));
  const newest = opened.at(-1)!;
  for (const [i, old] of opened.slice(0, -1).entries()) {
    const end = await old.ended;
    assert.notEqual(end, "still open", `session ${i} was not replaced`);
    assert.ok(isShoalError(end, "FAILED_PRECONDITION") && end.message.includes("newer session"), String(end));
    await assert.rejects(heartbeat(ch, old.id), (e) => isShoalError(e, "NOT_FOUND"), `the replaced session ${i} no longer heartbeats`);
  }
  const { periodMs } = await heartbeat(ch, newest.id);
  assert.ok(periodMs >= 270 && periodMs <= 330, `the newest session heartbeats and is told the 300 ms period ± 10 % (${periodMs})`);
  const raced = await Promise.race([newest.ended, new Promise<"open">((r) => setTimeout(() => r("open"), 500))]);
  assert.equal(raced, "open", "the newest session stays open");
});

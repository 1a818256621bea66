// Strings a node reports to the dispatcher are bounded where they enter the manager (in-process
// daemon, real mTLS): NodeDescription fields at most 256 bytes, TaskStatus message/err at most 1 KiB,
// each checked at the bound (accepted) and one byte past it (refused with INVALID_ARGUMENT, naming
// the field); an accepted description is what `node inspect` then shows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { ShoalError, isShoalError } from "../../src/base/errors.js";
import { createNodeKeyAndCsr } from "../../src/ca/index.js";
import { CAClient, type IssueNodeCertificateResponse } from "../../src/proto/shoal/v1/ca.js";
import { createJoinChannel, unaryCall, type SecureChannel } from "../../src/transport/client.js";
import { fromGrpcError } from "../../src/transport/errors.js";
import { DispatcherClient, type SessionMessage, type UpdateTaskStatusResponse } from "../../src/proto/shoal/v1/dispatcher.js";
import { NodeAvailability, TaskState, type NodeDescription } from "../../src/proto/shoal/v1/objects.js";
import {
  MAX_NODE_DESCRIPTION_FIELD_BYTES,
  MAX_STATUS_MESSAGE_BYTES,
  MAX_TASK_STATUS_UPDATES,
  checkNodeDescription,
  checkTaskStatusUpdates,
} from "../../src/manager/dispatcher/limits.js";
import { waitFor } from "../e2e/cluster.js";
import { channelAs } from "../e2e/identity.js";
import { singleManager } from "./single-manager.js";
import { thrownCode } from "../state/fixtures.js";


/** `bytes` UTF-8 bytes, ending in a 2-byte character so that a char count would get it wrong. */
function text(bytes: number): string {
  return "h".repeat(bytes - 2) + "é";
}

function session(ch: SecureChannel, description: NodeDescription): Promise<SessionMessage> {
  const stream = ch.client(DispatcherClient).session({ description, addr: "" });
  return new Promise<SessionMessage>((resolve, reject) => {
    stream.on("data", (m: SessionMessage) => {
      resolve(m);
      stream.cancel();
    });
    stream.on("error", (err) => reject(fromGrpcError(err)));
    stream.on("end", () => reject(new ShoalError("UNAVAILABLE", "session ended")));
  }).finally(() => stream.cancel());
}

function statusUpdate(ch: SecureChannel, sessionId: string, message: string, err: string): Promise<UpdateTaskStatusResponse> {
  const update = { taskId: "0".repeat(25), status: { state: TaskState.TASK_STATE_RUNNING, message, err, timestamp: new Date(), exitCode: 0, pid: 1 } };
  return unaryCall<UpdateTaskStatusResponse>((cb) =>
    ch.client(DispatcherClient).updateTaskStatus({ sessionId, updates: [update] }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb),
  );
}

test("the bounds as pure checks: at the bound and one byte past it", () => {
  const ok = { hostname: text(MAX_NODE_DESCRIPTION_FIELD_BYTES), platform: text(MAX_NODE_DESCRIPTION_FIELD_BYTES), engineVersion: text(MAX_NODE_DESCRIPTION_FIELD_BYTES), engineLabels: {}, executors: [], resources: undefined };
  assert.doesNotThrow(() => checkNodeDescription(ok));
  assert.doesNotThrow(() => checkNodeDescription(undefined));
  for (const field of ["hostname", "platform", "engineVersion"] as const) {
    assert.equal(thrownCode(() => checkNodeDescription({ ...ok, [field]: text(MAX_NODE_DESCRIPTION_FIELD_BYTES + 1) })), "INVALID_ARGUMENT", field);
  }
  const status = (message: string, err: string) => ({ taskId: "t", status: { state: TaskState.TASK_STATE_RUNNING, message, err, timestamp: undefined, exitCode: 0, pid: 0 } });
  assert.doesNotThrow(() => checkTaskStatusUpdates([status(text(MAX_STATUS_MESSAGE_BYTES), text(MAX_STATUS_MESSAGE_BYTES))]));
  assert.equal(thrownCode(() => checkTaskStatusUpdates([status(text(MAX_STATUS_MESSAGE_BYTES + 1), "")])), "INVALID_ARGUMENT");
  assert.equal(thrownCode(() => checkTaskStatusUpdates([status("", text(MAX_STATUS_MESSAGE_BYTES + 1))])), "INVALID_ARGUMENT");
  assert.doesNotThrow(() => checkTaskStatusUpdates(Array.from({ length: MAX_TASK_STATUS_UPDATES }, () => status("", ""))));
  assert.equal(thrownCode(() => checkTaskStatusUpdates(Array.from({ length: MAX_TASK_STATUS_UPDATES + 1 }, () => status("", "")))), "INVALID_ARGUMENT");
});

test("the dispatcher refuses over-long node descriptions and task status strings, and stores what it accepts", { timeout: 60_000 }, async (t) => {
  const { dir, addr, daemon, client, init } = await singleManager(t, "shoal-dlimits-");
  const identity = { certPem: readFileSync(join(dir, "certificates/node.crt"), "utf8"), keyPem: readFileSync(join(dir, "certificates/node.key"), "utf8") };
  const ch = channelAs(addr, readFileSync(join(dir, "certificates/root-ca.crt"), "utf8"), init.clusterId, identity);
  t.after(() => ch.close());

  const atBound = { hostname: text(MAX_NODE_DESCRIPTION_FIELD_BYTES), platform: "linux/x64", engineVersion: text(MAX_NODE_DESCRIPTION_FIELD_BYTES), engineLabels: {}, executors: [], resources: undefined };
  for (const field of ["hostname", "platform", "engineVersion"] as const) {
    await assert.rejects(session(ch, { ...atBound, [field]: text(MAX_NODE_DESCRIPTION_FIELD_BYTES + 1) }), (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes(field), field);
  }
  const first = await session(ch, atBound);
  await waitFor("the reported description in the store", async () => {
    const node = await client.getNode(init.nodeId);
    return (node.description?.hostname === atBound.hostname && node.description.engineVersion === atBound.engineVersion) || undefined;
  }, 10_000);

  await assert.rejects(statusUpdate(ch, first.sessionId, text(MAX_STATUS_MESSAGE_BYTES + 1), ""), (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes("message"));
  await assert.rejects(statusUpdate(ch, first.sessionId, "", text(MAX_STATUS_MESSAGE_BYTES + 1)), (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes("err"));
  // At the bound the request passes the checks (the session may have ended since: NOT_FOUND is a handler answer).
  await statusUpdate(ch, first.sessionId, text(MAX_STATUS_MESSAGE_BYTES), text(MAX_STATUS_MESSAGE_BYTES)).catch((e: unknown) => {
    assert.ok(isShoalError(e, "NOT_FOUND"), String(e));
  });
});

test("control and bidi-control characters are refused in what a node reports, at the dispatcher and at join", { timeout: 60_000 }, async (t) => {
  const { dir, addr, daemon, client, init } = await singleManager(t, "shoal-dctl-");
  const rootCaPem = readFileSync(join(dir, "certificates/root-ca.crt"), "utf8");
  const identity = { certPem: readFileSync(join(dir, "certificates/node.crt"), "utf8"), keyPem: readFileSync(join(dir, "certificates/node.key"), "utf8") };
  const ch = channelAs(addr, rootCaPem, init.clusterId, identity);
  t.after(() => ch.close());

  const clean = { hostname: "web-1", platform: "linux/x64", engineVersion: "1.0", engineLabels: {}, executors: [], resources: undefined };
  const hostile = ["\x1b[2J", "a\nb", "\r", "\x00", "\x7f", "\u009b", "\u202e", "\u2067"];
  for (const field of ["hostname", "platform", "engineVersion"] as const) {
    for (const bad of hostile) {
      await assert.rejects(
        session(ch, { ...clean, [field]: `x${bad}y` }),
        (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes(`description.${field}`),
        `${field} ${JSON.stringify(bad)}`,
      );
    }
  }
  const stream = ch.client(DispatcherClient).session({ description: clean, addr: "10.0.0.9:1\x1b[1A" });
  await assert.rejects(
    new Promise((resolve, reject) => {
      stream.on("data", resolve);
      stream.on("error", (err) => reject(fromGrpcError(err)));
    }).finally(() => stream.cancel()),
    (e) => isShoalError(e, "INVALID_ARGUMENT") && /\baddr\b/.test(e.message),
  );
  const first = await session(ch, clean);
  await assert.rejects(statusUpdate(ch, first.sessionId, "ok\x1b[31m", ""), (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes("status.message"));
  await assert.rejects(statusUpdate(ch, first.sessionId, "", "line\nforged"), (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes("status.err"));

  // Join with a valid worker token but a hostile hostname or address: refused, and no node is created.
  const before = (await client.listNodes()).length;
  const { csrPem } = await createNodeKeyAndCsr();
  const joinCh = createJoinChannel(addr, rootCaPem);
  t.after(() => joinCh.close());
  const issue = (hostname: string, joinAddr: string) =>
    unaryCall<IssueNodeCertificateResponse>((cb) =>
      joinCh
        .client(CAClient)
        .issueNodeCertificate(
          { csr: Buffer.from(csrPem), token: init.workerToken, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, hostname, addr: joinAddr },
          new grpc.Metadata(),
          { deadline: Date.now() + 5000 },
          cb,
        ),
    );
  await assert.rejects(issue("evil\x1b[2J\x1b[H\nforged-row", "10.0.0.9:1"), (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes("hostname"));
  await assert.rejects(issue("evil\u202e", "10.0.0.9:1"), (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes("hostname"));
  await assert.rejects(issue("ok", "10.0.0.9:1\n"), (e) => isShoalError(e, "INVALID_ARGUMENT") && e.message.includes("addr"));
  assert.equal((await client.listNodes()).length, before, "a refused join creates no node");
  const joined = await issue("web-2", "10.0.0.9:1");
  assert.equal(joined.nodeId.length, 25, "a clean join with the same token still works");
});

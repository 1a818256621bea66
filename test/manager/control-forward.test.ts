// A follower forwards control calls to the leader; a retry must never apply a write twice. Against a
// real mTLS "leader" (port 0 on 127.0.0.1) that applies a write and then drops the connection before
// answering: the write is not sent again (OUTCOME_UNKNOWN), a read is; a leader that cannot be
// reached at all, or that answers NOT_LEADER, is retried (the request certainly did not apply).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type Server, type Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { ManualClock, systemClock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { ControlService } from "../../src/proto/shoal/v1/control.js";
import { ControlForwarder } from "../../src/manager/control-forwarder.js";
import { handlerError, LeaderRedirect } from "../../src/manager/handlers.js";
import { RevocationState } from "../../src/transport/revocation.js";
import type { SecureServer } from "../../src/transport/server.js";
import { freePort } from "../e2e/cluster.js";
import { makePki, pkiServer, type Pki } from "../transport/fixtures.js";

type Behaviour = "apply" | "apply-then-drop" | "not-leader";

/** A TCP relay in front of the leader, so a test can break the connection the way a crash or a network fault does. */
class Relay {
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  constructor(
    readonly port: number,
    private readonly targetPort: number,
  ) {}

  async listen(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", resolve));
  }

  /** Cuts every open connection at the TCP level (no HTTP/2 frame announces it). */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.dropAll();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise((r) => server.close(r));
  }
}

interface FakeLeader {
  applied: string[];
  reads: number;
  behaviour: Behaviour;
  server: SecureServer;
  port: number;
}

async function startLeader(pki: Pki, relayFor: () => Relay | undefined): Promise<FakeLeader> {
  const revocation = new RevocationState();
  const server = pkiServer(pki, { revocation });
  const leader: FakeLeader = { applied: [], reads: 0, behaviour: "apply", server, port: 0 };
  const answerOrDrop = (cb: () => void): void => {
    if (leader.behaviour === "apply-then-drop") {
      // Applied, then the connection breaks before the answer leaves.
      leader.behaviour = "apply";
      relayFor()?.dropAll();
      return;
    }
    cb();
  };
  server.addService(ControlService, {
    putValue: (call: grpc.ServerUnaryCall<{ key: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      if (leader.behaviour === "not-leader") {
        leader.behaviour = "apply";
        cb(handlerError(new LeaderRedirect(undefined)));
        return;
      }
      leader.applied.push(call.request.key);
      answerOrDrop(() => cb(null, { index: BigInt(leader.applied.length) }));
    },
    getValue: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      leader.reads++;
      answerOrDrop(() => cb(null, { found: true, value: Buffer.from("v"), index: 0n }));
    },
  });
  leader.port = await server.listen("127.0.0.1:0", "open");
  return leader;
}

function forwarderTo(pki: Pki, addr: string): ControlForwarder {
  return new ControlForwarder({
    clock: systemClock,
    clusterId: pki.clusterId,
    rootCaPem: pki.ca.rootCaPem,
    identity: () => ({ certPem: pki.manager.certPem, keyPem: pki.manager.keyPem }),
    isLeader: () => false,
    leaderAddr: () => addr,
    local: async () => assert.fail("this manager is not the leader"),
    unreachableWaitMs: 50,
    deadlineMs: 8_000,
  });
}

test("forwarded control calls: no second apply after a dropped answer; safe retries still happen", { timeout: 60_000 }, async (t) => {
  const pki = makePki();
  let relay: Relay | undefined;
  const leader = await startLeader(pki, () => relay);
  t.after(async () => {
    await relay?.close();
    await leader.server.shutdown(0);
    pki.cleanup();
  });
  relay = new Relay(await freePort(), leader.port);
  await relay.listen();
  const forwarder = forwarderTo(pki, `127.0.0.1:${relay.port}`);
  t.after(() => forwarder.close());

  // 1. The leader applies the write and the connection drops before the answer: the outcome is
  //    unknown, and the forwarder must not send it again (although the leader answers at once again).
  leader.behaviour = "apply-then-drop";
  await assert.rejects(forwarder.call("putValue", { key: "k1", value: Buffer.from("v") }), (e) => isShoalError(e, "OUTCOME_UNKNOWN") && /may or may not/.test(e.message));
  assert.deepEqual(leader.applied, ["k1"], "the write was applied exactly once");
  await forwarder.call("putValue", { key: "k2", value: Buffer.from("v") });
  assert.deepEqual(leader.applied, ["k1", "k2"]);

  // 2. A read whose answer was dropped is simply asked again.
  leader.behaviour = "apply-then-drop";
  const readsBefore = leader.reads;
  const read = (await forwarder.call("getValue", { key: "k1" })) as { found: boolean };
  assert.equal(read.found, true);
  assert.equal(leader.reads, readsBefore + 2);

  // 3. Nobody listens (connection refused: nothing was sent), then the leader is reachable again: retried, applied once.
  await relay.close();
  // Give the channel the moment it needs to see its connection closed (else it would still send on it).
  await new Promise((r) => setTimeout(r, 200));
  relay = new Relay(relay.port, leader.port);
  const late = setTimeout(() => void relay!.listen(), 300);
  t.after(() => clearTimeout(late));
  await forwarder.call("putValue", { key: "k3", value: Buffer.from("v") });
  assert.deepEqual(leader.applied, ["k1", "k2", "k3"]);

  // 4. A NOT_LEADER answer means the request was refused before any write: retried, applied once.
  leader.behaviour = "not-leader";
  await forwarder.call("putValue", { key: "k4", value: Buffer.from("v") });
  assert.deepEqual(leader.applied, ["k1", "k2", "k3", "k4"]);
});

test("the forwarder waits for a leader on its injected clock, not the wall clock", async () => {
  const clock = new ManualClock(1_000_000);
  const forwarder = new ControlForwarder({
    clock,
    clusterId: "c",
    rootCaPem: "",
    identity: () => ({ certPem: "", keyPem: "" }),
    isLeader: () => false,
    leaderAddr: () => undefined,
    local: async () => assert.fail("no leader, nothing runs locally"),
    unreachableWaitMs: 0,
    leaderWaitMs: 3000,
  });
  let outcome: unknown;
  const waiting = forwarder.leaderAddrOrWait().then(
    () => (outcome = "resolved"),
    (err: unknown) => (outcome = err),
  );
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
  for (let i = 0; i < 20; i++) await turn();
  assert.equal(outcome, undefined, "virtual time has not moved, so it still waits");
  for (let elapsedMs = 0; elapsedMs <= 3100 && outcome === undefined; elapsedMs += 50) {
    clock.advance(50);
    await turn();
  }
  await waiting;
  assert.ok(isShoalError(outcome, "NO_QUORUM"), String(outcome));
});

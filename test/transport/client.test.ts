// Client-side checks over real mTLS: the server's role and cluster, the pinned-CA bootstrap, message
// size bounds, garbage on the port, and leader redirection.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../../src/base/errors.js";
import { caDigestOf } from "../../src/ca/index.js";
import { ControlService } from "../../src/proto/shoal/v1/control.js";
import { callWithLeaderRedirect, notLeaderError } from "../../src/transport/leader.js";
import { createSecureChannel, fetchRootCA, unaryCall, type SecureChannel } from "../../src/transport/client.js";
import { RevocationState } from "../../src/transport/revocation.js";
import { makePki, pkiServer, type NodeCert, type Pki } from "./fixtures.js";
import { channelFor, ControlClient, deadline, startHarness, type Harness } from "./harness.js";

function getValue(ch: SecureChannel, key = "k"): Promise<{ found: boolean; value: Buffer }> {
  const c = ch.client(ControlClient);
  return unaryCall((cb) => c.getValue({ key }, new grpc.Metadata(), deadline(), cb));
}

function putValue(ch: SecureChannel, key: string, value: Buffer): Promise<unknown> {
  const c = ch.client(ControlClient);
  return unaryCall((cb) => c.putValue({ key, value }, new grpc.Metadata(), deadline(), cb));
}

async function failure(p: Promise<unknown>): Promise<ShoalError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof ShoalError, `expected a ShoalError, got ${String(err)}`);
  return err;
}

describe("client checks the server", () => {
  let pki: Pki;
  before(() => {
    pki = makePki();
  });
  after(() => pki.cleanup());

  for (const [name, pick] of [
    ["a worker's certificate", (p: Pki) => p.workerAsServer],
    ["a certificate of another cluster", (p: Pki) => p.otherClusterServer],
  ] as const) {
    test(`refuses a server presenting ${name}`, async () => {
      const h = await startHarness(pki, { serverCert: pick(pki) });
      const ch = channelFor(pki, h.openPort, pki.manager);
      try {
        const err = await failure(getValue(ch));
        assert.equal(err.code, "UNAVAILABLE");
        assert.equal(h.seen.length, 0);
      } finally {
        ch.close();
        await h.close();
      }
    });
  }

  test("refuses a server whose certificate is on the client's revocation list", async () => {
    const h = await startHarness(pki);
    const revocation = new RevocationState({ nodeIds: [pki.server.nodeId], serials: [] });
    const ch = createSecureChannel(`127.0.0.1:${h.openPort}`, {
      rootCaPem: pki.ca.rootCaPem,
      certPem: pki.manager.certPem,
      keyPem: pki.manager.keyPem,
      expectServerRole: "swarm-manager",
      clusterId: pki.clusterId,
      revocation,
    });
    try {
      assert.equal((await failure(getValue(ch))).code, "UNAVAILABLE");
    } finally {
      ch.close();
      await h.close();
    }
  });

  test("refuses a server of another CA", async () => {
    const h = await startHarness(pki, { serverCert: pki.foreign });
    const ch = channelFor(pki, h.openPort, pki.manager);
    try {
      assert.equal((await failure(getValue(ch))).code, "UNAVAILABLE");
    } finally {
      ch.close();
      await h.close();
    }
  });
});

describe("pinned-CA bootstrap", () => {
  let pki: Pki;
  let h: Harness;
  before(async () => {
    pki = makePki();
    h = await startHarness(pki);
  });
  after(async () => {
    await h.close();
    pki.cleanup();
  });

  test("the right digest fetches the root CA", async () => {
    const pem = await fetchRootCA(`127.0.0.1:${h.openPort}`, caDigestOf(pki.ca.rootCaPem));
    assert.equal(pem, pki.ca.rootCaPem);
    // ... and that CA then pins the channel for the authenticated calls.
    const ch = createSecureChannel(`127.0.0.1:${h.openPort}`, {
      rootCaPem: pem,
      certPem: pki.manager.certPem,
      keyPem: pki.manager.keyPem,
      expectServerRole: "swarm-manager",
      clusterId: pki.clusterId,
    });
    try {
      assert.equal((await getValue(ch)).found, false);
    } finally {
      ch.close();
    }
  });

  test("a wrong digest is refused with TOKEN_DIGEST_MISMATCH", async () => {
    const err = await failure(fetchRootCA(`127.0.0.1:${h.openPort}`, caDigestOf(pki.foreignCa.rootCaPem)));
    assert.equal(err.code, "TOKEN_DIGEST_MISMATCH");
    assert.doesNotMatch(err.message, /BEGIN CERTIFICATE/);
  });

  test("a relay that serves the right CA under a foreign TLS certificate is refused", async () => {
    const relay = await startHarness(pki, { serverCert: pki.foreign });
    try {
      const err = await failure(fetchRootCA(`127.0.0.1:${relay.openPort}`, caDigestOf(pki.ca.rootCaPem)));
      assert.equal(err.code, "CERT_UNTRUSTED");
    } finally {
      await relay.close();
    }
  });
});

describe("robustness", () => {
  let pki: Pki;
  let h: Harness;
  before(async () => {
    pki = makePki();
    h = await startHarness(pki, { maxReceiveMessageBytes: 64 * 1024 });
  });
  after(async () => {
    await h.close();
    pki.cleanup();
  });

  test("an oversized message gets RESOURCE_EXHAUSTED and the server keeps serving", async () => {
    const ch = channelFor(pki, h.openPort, pki.manager);
    try {
      const err = await failure(putValue(ch, "big", randomBytes(200 * 1024)));
      assert.equal((err.cause as grpc.ServiceError).code, grpc.status.RESOURCE_EXHAUSTED);
      await putValue(ch, "small", Buffer.from("ok"));
      assert.equal((await getValue(ch, "small")).value.toString(), "ok");
    } finally {
      ch.close();
    }
  });

  test("message size options are bounded", () => {
    assert.throws(
      () => createSecureChannel("127.0.0.1:1", { rootCaPem: pki.ca.rootCaPem, expectServerRole: "swarm-manager", clusterId: pki.clusterId, maxSendMessageBytes: 1 << 30 }),
      (e: unknown) => e instanceof ShoalError && e.code === "INVALID_ARGUMENT",
    );
  });

  test("garbage bytes and abandoned connections on the port do not stop the server", async () => {
    const sends = [randomBytes(64 * 1024), Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01])];
    await Promise.all(
      sends.map(
        (bytes) =>
          new Promise<void>((resolve) => {
            const socket = net.connect(h.openPort, "127.0.0.1", () => socket.end(bytes));
            socket.on("error", () => resolve());
            socket.on("close", () => resolve());
            socket.resume();
          }),
      ),
    );
    const idle = net.connect(h.openPort, "127.0.0.1"); // opens and says nothing
    const ch = channelFor(pki, h.openPort, pki.manager);
    try {
      await putValue(ch, "after-garbage", Buffer.from("still here"));
      assert.equal((await getValue(ch, "after-garbage")).value.toString(), "still here");
    } finally {
      ch.close();
      idle.destroy();
    }
  });
});

describe("leader redirection", () => {
  let pki: Pki;
  let leader: Harness;
  let follower: Harness;
  let leaderless: Harness;
  async function followerOf(leaderAddr: string | undefined): Promise<Harness> {
    const revocation = new RevocationState();
    const server = pkiServer(pki, { revocation });
    server.addService(ControlService, {
      getValue: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(notLeaderError(leaderAddr)),
    });
    const openPort = await server.listen("127.0.0.1:0");
    return { server, revocation, openPort, peerPort: 0, seen: [], sessions: new Set(), close: () => server.shutdown(200) };
  }

  before(async () => {
    pki = makePki();
    leader = await startHarness(pki);
    follower = await followerOf(`127.0.0.1:${leader.openPort}`);
    leaderless = await followerOf(undefined);
  });
  after(async () => {
    await Promise.all([leader.close(), follower.close(), leaderless.close()]);
    pki.cleanup();
  });

  const connectAs = (cert: NodeCert) => (address: string) =>
    createSecureChannel(address, { rootCaPem: pki.ca.rootCaPem, certPem: cert.certPem, keyPem: cert.keyPem, expectServerRole: "swarm-manager", clusterId: pki.clusterId });

  test("a follower's hint is followed to the leader", async () => {
    const visited: string[] = [];
    const res = await callWithLeaderRedirect({
      address: `127.0.0.1:${follower.openPort}`,
      connect: (a) => {
        visited.push(a);
        return connectAs(pki.manager)(a);
      },
      call: (ch) => getValue(ch),
    });
    try {
      assert.equal(res.value.found, false);
      assert.equal(res.address, `127.0.0.1:${leader.openPort}`);
      assert.deepEqual(visited, [`127.0.0.1:${follower.openPort}`, `127.0.0.1:${leader.openPort}`]);
    } finally {
      res.connection.close();
    }
  });

  test("no known leader gives NOT_LEADER without looping", async () => {
    const err = await failure(callWithLeaderRedirect({ address: `127.0.0.1:${leaderless.openPort}`, connect: connectAs(pki.manager), call: (ch) => getValue(ch) }));
    assert.equal(err.code, "NOT_LEADER");
  });

  test("hops are bounded", async () => {
    const err = await failure(
      callWithLeaderRedirect({ address: `127.0.0.1:${follower.openPort}`, connect: connectAs(pki.manager), call: (ch) => getValue(ch), maxHops: 0 }),
    );
    assert.equal(err.code, "NOT_LEADER");
    assert.match(err.message, /gave up after following 0 leader redirects/);
  });
});

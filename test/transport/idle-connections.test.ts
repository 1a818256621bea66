// Connections that authenticate nothing are closed by the server (real TLS on 127.0.0.1): a TCP
// socket that never starts TLS, a TLS connection that never starts HTTP/2, and an HTTP/2 session
// that never opens a call, on both listeners. A connection with a call open stays, and a channel
// whose idle connection was closed makes its next call on a new one.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { unaryCall } from "../../src/transport/client.js";
import { DispatcherClient, type SessionMessage } from "../../src/proto/shoal/v1/dispatcher.js";
import { makePki, type Pki } from "./fixtures.js";
import { channelFor, ControlClient, deadline, startHarness, type Harness } from "./harness.js";

const HANDSHAKE_MS = 400;
const IDLE_MS = 400;
/** Liveness guard, far above the 400 ms limits: a socket still open after this counts as kept. */
const CLOSE_GUARD_MS = 8_000;

/** Resolves with how long the socket stayed open, or "kept" when it outlived the guard. */
function closedWithin(socket: net.Socket | tls.TLSSocket, startedMs: number): Promise<number | "kept"> {
  return new Promise((resolve) => {
    const guard = setTimeout(() => {
      socket.destroy();
      resolve("kept");
    }, CLOSE_GUARD_MS);
    socket.once("close", () => {
      clearTimeout(guard);
      resolve(Date.now() - startedMs);
    });
    socket.on("error", () => undefined);
  });
}

describe("idle connections are closed", () => {
  let pki: Pki;
  let h: Harness;
  before(async () => {
    pki = makePki();
    h = await startHarness(pki, { handshakeTimeoutMs: HANDSHAKE_MS, idleConnectionMs: IDLE_MS });
  });
  after(async () => {
    await h.close();
    pki.cleanup();
  });

  for (const listener of ["open", "peer"] as const) {
    const port = (): number => (listener === "open" ? h.openPort : h.peerPort);

    test(`${listener}: a TCP connection that never starts TLS`, async (t) => {
      const started = Date.now();
      const socket = net.connect(port(), "127.0.0.1");
      const result = await closedWithin(socket, started);
      t.diagnostic(`closed after ${result} ms`);
      assert.notEqual(result, "kept");
    });

    test(`${listener}: a TLS connection that never starts HTTP/2`, async (t) => {
      const started = Date.now();
      const socket = tls.connect({ host: "127.0.0.1", port: port(), ca: pki.ca.rootCaPem, cert: pki.manager.certPem, key: pki.manager.keyPem, ALPNProtocols: ["h2"], checkServerIdentity: () => undefined });
      await new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", resolve);
        socket.once("error", reject);
      });
      socket.resume(); // read (and drop) what the server sends, so its FIN is seen
      const result = await closedWithin(socket, started);
      t.diagnostic(`closed after ${result} ms`);
      assert.notEqual(result, "kept");
    });

    test(`${listener}: an HTTP/2 session that opens no call`, async (t) => {
      const started = Date.now();
      const session = http2.connect(`https://127.0.0.1:${port()}`, {
        ca: pki.ca.rootCaPem,
        cert: pki.manager.certPem,
        key: pki.manager.keyPem,
        checkServerIdentity: () => undefined,
      });
      session.on("error", () => undefined);
      await new Promise<void>((resolve, reject) => {
        session.once("connect", () => resolve());
        session.once("error", reject);
      });
      const result = await closedWithin(session.socket as tls.TLSSocket, started);
      t.diagnostic(`closed after ${result} ms`);
      session.destroy();
      assert.notEqual(result, "kept");
    });
  }

  test("a connection with a call open is kept; an idle channel reconnects for its next call", async () => {
    const ch = channelFor(pki, h.openPort, pki.manager);
    try {
      const stream = ch.client(DispatcherClient).session({ description: undefined, addr: "" });
      let ended = false;
      stream.on("error", () => (ended = true));
      stream.on("end", () => (ended = true));
      await new Promise<SessionMessage>((resolve) => stream.once("data", resolve));
      await new Promise((r) => setTimeout(r, IDLE_MS * 4));
      assert.equal(ended, false, "an open session stream outlives the idle limit");
      stream.cancel();

      const control = ch.client(ControlClient);
      await unaryCall((cb) => control.getValue({ key: "k" }, new grpc.Metadata(), deadline(), cb));
      await new Promise((r) => setTimeout(r, IDLE_MS * 4));
      const again = await unaryCall<{ found: boolean }>((cb) => control.getValue({ key: "k" }, new grpc.Metadata(), deadline(), cb));
      assert.equal(again.found, false, "the call after the idle close succeeds");
    } finally {
      ch.close();
    }
  });
});

// TLS between nodes is 1.3 only (DESIGN.md §3): on every listener (the open port agents and joiners
// dial, and the certificate-required peer port) a TLS 1.2 handshake (CBC or GCM suites) and a TLS
// 1.1 one fail, while TLS 1.3 works, also after the context was swapped (renewal, new CRL); the
// certless CA bootstrap still works over 1.3; and Shoal's clients refuse a server that offers 1.2.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import tls from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { caDigestOf } from "../../src/ca/index.js";
import { fetchRootCA } from "../../src/transport/client.js";
import { makePki, type Pki } from "./fixtures.js";
import { channelFor, ControlClient, deadline, startHarness, type Harness } from "./harness.js";

interface Attempt {
  minVersion: tls.SecureVersion;
  maxVersion: tls.SecureVersion;
  ciphers?: string;
}

/** Resolves with the negotiated protocol, or with the handshake error's message. */
function handshake(pki: Pki, port: number, attempt: Attempt): Promise<{ protocol?: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      servername: "swarm-manager",
      ca: pki.ca.rootCaPem,
      cert: pki.manager.certPem,
      key: pki.manager.keyPem,
      ALPNProtocols: ["h2"],
      minVersion: attempt.minVersion,
      maxVersion: attempt.maxVersion,
      // SECLEVEL=0 lets this client offer TLS 1.1 at all, so a refusal is the server's.
      ...(attempt.ciphers !== undefined ? { ciphers: attempt.ciphers } : {}),
      checkServerIdentity: () => undefined,
    });
    socket.once("secureConnect", () => {
      const protocol = socket.getProtocol() ?? "unknown";
      socket.destroy();
      resolve({ protocol });
    });
    socket.once("error", (err) => resolve({ error: err.message }));
  });
}

const REFUSED: [string, Attempt][] = [
  ["TLS 1.2 with a CBC suite", { minVersion: "TLSv1.2", maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA" }],
  ["TLS 1.2 with a GCM suite", { minVersion: "TLSv1.2", maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384" }],
  ["TLS 1.1", { minVersion: "TLSv1.1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" }],
];

describe("TLS 1.3 only, on every listener", () => {
  let pki: Pki;
  let h: Harness;
  before(async () => {
    pki = makePki();
    h = await startHarness(pki, { crlPem: pki.ca.crlPem() });
  });
  after(async () => {
    await h.close();
    pki.cleanup();
  });

  for (const listener of ["open", "peer"] as const) {
    const port = (): number => (listener === "open" ? h.openPort : h.peerPort);
    for (const [name, attempt] of REFUSED) {
      test(`the ${listener} listener refuses ${name}`, async () => {
        const result = await handshake(pki, port(), attempt);
        assert.equal(result.protocol, undefined, `negotiated ${result.protocol}`);
        assert.ok(result.error !== undefined);
      });
    }
    test(`the ${listener} listener accepts TLS 1.3`, async () => {
      const result = await handshake(pki, port(), { minVersion: "TLSv1.3", maxVersion: "TLSv1.3" });
      assert.equal(result.protocol, "TLSv1.3", result.error);
    });
  }

  test("a swapped context (renewed identity, new CRL) is still TLS 1.3 only", async () => {
    h.server.updateIdentity(pki.server.certPem, pki.server.keyPem);
    h.server.setCrl(pki.ca.crlPem());
    for (const port of [h.openPort, h.peerPort]) {
      for (const [name, attempt] of REFUSED) {
        const result = await handshake(pki, port, attempt);
        assert.equal(result.protocol, undefined, `${name} on port ${port} after the swap`);
      }
      assert.equal((await handshake(pki, port, { minVersion: "TLSv1.3", maxVersion: "TLSv1.3" })).protocol, "TLSv1.3");
    }
  });

  test("the certless CA bootstrap and authenticated calls work over TLS 1.3", async () => {
    const pem = await fetchRootCA(`127.0.0.1:${h.openPort}`, caDigestOf(pki.ca.rootCaPem));
    assert.equal(pem, pki.ca.rootCaPem);
    const ch = channelFor(pki, h.peerPort, pki.manager);
    try {
      const c = ch.client(ControlClient);
      const got = await new Promise<{ found: boolean }>((resolve, reject) =>
        c.getValue({ key: "k" }, new grpc.Metadata(), deadline(), (err: grpc.ServiceError | null, v?: { found: boolean }) => (err ? reject(err) : resolve(v!))),
      );
      assert.equal(got.found, false);
    } finally {
      ch.close();
    }
  });
});

test("Shoal's clients refuse a server that offers at most TLS 1.2", async (t) => {
  const pki = makePki();
  const server = tls.createServer({ cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.rootCaPem, maxVersion: "TLSv1.2", ALPNProtocols: ["h2"] });
  let established = 0;
  const clientErrors: string[] = [];
  server.on("secureConnection", (socket) => {
    established++;
    socket.destroy();
  });
  server.on("tlsClientError", (err) => clientErrors.push(err.message));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  try {
    const authenticated = channelFor(pki, port, pki.manager);
    const certless = channelFor(pki, port, undefined);
    try {
      for (const ch of [authenticated, certless]) {
        const c = ch.client(ControlClient);
        await assert.rejects(
          new Promise((resolve, reject) =>
            c.getValue({ key: "k" }, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (err: grpc.ServiceError | null, v?: unknown) => (err ? reject(err) : resolve(v))),
          ),
        );
      }
    } finally {
      authenticated.close();
      certless.close();
    }
    await assert.rejects(fetchRootCA(`127.0.0.1:${port}`, caDigestOf(pki.ca.rootCaPem), { timeoutMs: 3000 }));
    assert.equal(established, 0, "no handshake completed below TLS 1.3");
    assert.ok(clientErrors.length > 0, "the server saw the clients' refusals");
    t.diagnostic(`the TLS 1.2 server saw: ${clientErrors[0]!}`);
  } finally {
    server.close();
    pki.cleanup();
  }
});


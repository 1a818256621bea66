// Revocation over real mTLS: a revoked node's next call and its open stream are refused within 1 s,
// revocation by serial alone works, and after setCrl the peer listener refuses the handshake.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../../src/base/errors.js";
import { unaryCall } from "../../src/transport/client.js";
import { ERROR_CODE_METADATA } from "../../src/transport/errors.js";
import { makePki, type NodeCert, type Pki } from "./fixtures.js";
import { channelFor, ControlClient, deadline, DispatcherClient, startHarness, type Harness } from "./harness.js";

function heartbeat(pki: Pki, port: number, cert: NodeCert): Promise<unknown> {
  const ch = channelFor(pki, port, cert);
  const client = ch.client(DispatcherClient);
  return unaryCall((cb) => client.heartbeat({ sessionId: "s" }, new grpc.Metadata(), deadline(), cb)).finally(() => ch.close());
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; status: number | undefined }> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof ShoalError, "the call should have been refused");
  return { code: err.code, status: (err.cause as Partial<grpc.ServiceError>).code };
}

describe("revocation", () => {
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

  test("revoking a worker's node ID ends its open stream and refuses its next call", async (t) => {
    await heartbeat(pki, h.openPort, pki.worker);
    const ch = channelFor(pki, h.openPort, pki.worker);
    const client = ch.client(DispatcherClient);
    // A call on the same, already-open connection: revocation must not depend on a new handshake.
    const stream = client.session({ description: undefined, addr: "" });
    const first = await new Promise<{ sessionId: string }>((resolve, reject) => {
      stream.once("data", resolve);
      stream.once("error", reject);
    });
    assert.equal(first.sessionId, `session-of-${pki.worker.nodeId}`);
    assert.equal(h.server.authorizer.openCallCount, 1);

    const ended = new Promise<grpc.ServiceError>((resolve) => stream.on("error", resolve));
    const revokedAtMs = Date.now();
    h.revocation.revoke({ nodeIds: [pki.worker.nodeId] });
    // Liveness guard only (10 s); the time it took is reported.
    const err = await Promise.race([ended, new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the revoked stream was not ended within 10 s")), 10_000))]);
    const elapsedMs = Date.now() - revokedAtMs;
    t.diagnostic(`revoked stream ended ${elapsedMs} ms after the revocation`);
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    assert.equal(err.metadata.get(ERROR_CODE_METADATA)[0], "CERT_REVOKED");
    assert.equal(h.server.authorizer.openCallCount, 0);

    // Next unary call on the same connection, then on a fresh one.
    const sameConnection = await refusal(unaryCall((cb) => client.heartbeat({ sessionId: "s" }, new grpc.Metadata(), deadline(), cb)));
    assert.deepEqual(sameConnection, { code: "CERT_REVOKED", status: grpc.status.PERMISSION_DENIED });
    ch.close();
    assert.deepEqual(await refusal(heartbeat(pki, h.openPort, pki.worker)), { code: "CERT_REVOKED", status: grpc.status.PERMISSION_DENIED });
    // The server stream handler learnt that the call is over.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(h.sessions.size, 0);
  });

  test("other nodes keep working after a revocation", async () => {
    await heartbeat(pki, h.openPort, pki.manager);
  });

  test("revoking by serial only refuses the certificate", async () => {
    const worker2 = pki.ca.issue({ role: "swarm-worker", clusterId: pki.clusterId });
    await heartbeat(pki, h.openPort, worker2);
    // A differently formatted serial (lower case, leading zero) must still match.
    h.revocation.revoke({ serials: ["0" + worker2.serial.toLowerCase()] });
    assert.deepEqual(await refusal(heartbeat(pki, h.openPort, worker2)), { code: "CERT_REVOKED", status: grpc.status.PERMISSION_DENIED });
    // A new certificate for the same node ID is not covered by the serial.
    const renewed = pki.ca.issue({ role: "swarm-worker", clusterId: pki.clusterId, nodeId: worker2.nodeId });
    await heartbeat(pki, h.openPort, renewed);
  });

  test("after setCrl a new TLS handshake with the revoked certificate fails on the peer listener", async () => {
    const manager2 = pki.ca.issue({ role: "swarm-manager", clusterId: pki.clusterId });
    const getValue = (cert: NodeCert): Promise<unknown> => {
      const ch = channelFor(pki, h.peerPort, cert);
      const c = ch.client(ControlClient);
      return unaryCall((cb) => c.getValue({ key: "x" }, new grpc.Metadata(), deadline(), cb)).finally(() => ch.close());
    };
    await getValue(manager2);
    h.server.setCrl(pki.ca.crlPem()); // a CRL with nothing of manager2's yet
    await getValue(manager2);
    pki.ca.revoke(manager2);
    h.server.setCrl(pki.ca.crlPem());
    // The revocation list was NOT told: the refusal comes from the TLS layer alone.
    assert.equal(h.revocation.isRevoked(manager2.nodeId, manager2.serial), false);
    const refused = await refusal(getValue(manager2));
    assert.equal(refused.status, grpc.status.UNAVAILABLE);
    await getValue(pki.manager);
  });

  test("an identity swap reaches new handshakes: a worker certificate as server is then refused by clients", async () => {
    const getValue = (): Promise<unknown> => {
      const ch = channelFor(pki, h.openPort, pki.manager);
      const c = ch.client(ControlClient);
      return unaryCall((cb) => c.getValue({ key: "x" }, new grpc.Metadata(), deadline(), cb)).finally(() => ch.close());
    };
    const renewed = pki.ca.issue({ role: "swarm-manager", clusterId: pki.clusterId, nodeId: pki.server.nodeId });
    h.server.updateIdentity(renewed.certPem, renewed.keyPem);
    await getValue();
    h.server.updateIdentity(pki.workerAsServer.certPem, pki.workerAsServer.keyPem);
    assert.equal((await refusal(getValue())).status, grpc.status.UNAVAILABLE);
    assert.throws(() => h.server.updateIdentity(renewed.certPem, pki.manager.keyPem), (e: unknown) => e instanceof ShoalError && e.code === "PEM_INVALID");
    h.server.updateIdentity(pki.server.certPem, pki.server.keyPem);
    await getValue();
  });
});

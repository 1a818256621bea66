// Shared setup for the transport integration tests: a server with the generic Shoal services and
// small handlers, and clients for each test certificate.
import * as grpc from "@grpc/grpc-js";
import { BlobsService } from "../../src/proto/shoal/v1/blobs.js";
import { CAService } from "../../src/proto/shoal/v1/ca.js";
import { ControlClient, ControlService } from "../../src/proto/shoal/v1/control.js";
import { DispatcherClient, DispatcherService, type SessionMessage } from "../../src/proto/shoal/v1/dispatcher.js";
import { RaftMembershipService, RaftService } from "../../src/proto/shoal/v1/raft.js";
import { createSecureChannel, type SecureChannel } from "../../src/transport/client.js";
import { RevocationState } from "../../src/transport/revocation.js";
import type { SecureServer, SecureServerOptions } from "../../src/transport/server.js";
import type { PeerIdentity } from "../../src/transport/identity.js";
import { pkiServer, type NodeCert, type Pki } from "./fixtures.js";

export interface Harness {
  server: SecureServer;
  revocation: RevocationState;
  openPort: number;
  peerPort: number;
  /** Identities the handlers saw, in call order. */
  seen: PeerIdentity[];
  /** Server-side session streams currently open. */
  sessions: Set<grpc.ServerWritableStream<unknown, SessionMessage>>;
  close(): Promise<void>;
}

export async function startHarness(pki: Pki, opts: Partial<SecureServerOptions> & { serverCert?: NodeCert } = {}): Promise<Harness> {
  const revocation = opts.revocation ?? new RevocationState();
  const server = pkiServer(pki, { ...opts, revocation });
  const seen: PeerIdentity[] = [];
  const sessions = new Set<grpc.ServerWritableStream<unknown, SessionMessage>>();
  const values = new Map<string, Buffer>();
  server.addService(CAService, {
    getRootCaCertificate: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { certificate: Buffer.from(pki.ca.rootCaPem), previousCaDigests: [] }),
  });
  server.addService(ControlService, {
    putValue: (call: grpc.ServerUnaryCall<{ key: string; value: Buffer }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(server.peerOf(call));
      values.set(call.request.key, call.request.value);
      cb(null, { index: BigInt(values.size) });
    },
    getValue: (call: grpc.ServerUnaryCall<{ key: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(server.peerOf(call));
      const value = values.get(call.request.key);
      cb(null, { found: value !== undefined, value: value ?? Buffer.alloc(0), index: 0n });
    },
  });
  server.addService(DispatcherService, {
    heartbeat: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seen.push(server.peerOf(call));
      cb(null, { periodMs: 1000 });
    },
    session: (call: grpc.ServerWritableStream<unknown, SessionMessage>) => {
      const peer = server.peerOf(call);
      seen.push(peer);
      sessions.add(call);
      const forget = (): void => void sessions.delete(call);
      call.on("cancelled", forget);
      call.on("close", forget);
      call.on("finish", forget);
      call.write({ sessionId: `session-of-${peer.nodeId}`, managers: [], revokedNodeIds: [], revokedSerials: [], node: undefined, prefetch: false, rootCaBundle: Buffer.alloc(0) });
    },
  });
  server.addService(RaftService, {});
  server.addService(RaftMembershipService, {});
  // Registered without handlers so that the policy table's P2P paths reach the interceptor.
  server.addService(BlobsService, {});
  const openPort = await server.listen("127.0.0.1:0", "open");
  const peerPort = await server.listen("127.0.0.1:0", "peer");
  return { server, revocation, openPort, peerPort, seen, sessions, close: () => server.shutdown(200) };
}

export function channelFor(pki: Pki, port: number, cert: NodeCert | undefined, extra: { maxSendMessageBytes?: number } = {}): SecureChannel {
  return createSecureChannel(`127.0.0.1:${port}`, {
    rootCaPem: pki.ca.rootCaPem,
    ...(cert ? { certPem: cert.certPem, keyPem: cert.keyPem } : {}),
    expectServerRole: "swarm-manager",
    clusterId: pki.clusterId,
    ...extra,
  });
}

export { ControlClient, DispatcherClient };

export function deadline(ms = 5000): { deadline: Date } {
  return { deadline: new Date(Date.now() + ms) };
}

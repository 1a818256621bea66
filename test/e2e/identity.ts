// Direct gRPC calls to a manager with a chosen client identity (a node's own certificate, a removed
// node's, another cluster's, an expired one), for the tests that attack the listeners; and reading
// the CA key back out of a stopped manager's encrypted store, as an attacker holding the DEK could.
import * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../../src/base/errors.js";
import { createSecureChannel, unaryCall, type SecureChannel } from "../../src/transport/client.js";
import { fromGrpcError, ERROR_CODE_METADATA } from "../../src/transport/errors.js";
import { DispatcherClient, type HeartbeatResponse, type SessionMessage } from "../../src/proto/shoal/v1/dispatcher.js";
import { ControlClient, type ListNodesResponse } from "../../src/proto/shoal/v1/control.js";
import { CAClient, type RenewNodeCertificateResponse } from "../../src/proto/shoal/v1/ca.js";
import { EncryptedStore, RaftLogStorage, dataDirPaths, readDekFile } from "../../src/storage/index.js";
import { decodeSnapshotEnvelope } from "../../src/raft/node/index.js";
import { ObjectStore } from "../../src/state/index.js";
import type { Cluster } from "../../src/proto/shoal/v1/objects.js";

export interface ClientIdentity {
  certPem: string;
  keyPem: string;
}

export function channelAs(addr: string, rootCaPem: string, clusterId: string, identity: ClientIdentity): SecureChannel {
  return createSecureChannel(addr, { rootCaPem, certPem: identity.certPem, keyPem: identity.keyPem, expectServerRole: "swarm-manager", clusterId });
}

const deadline = (): Partial<grpc.CallOptions> => ({ deadline: Date.now() + 5000 });

export function heartbeat(ch: SecureChannel): Promise<HeartbeatResponse> {
  return unaryCall<HeartbeatResponse>((cb) => ch.client(DispatcherClient).heartbeat({ sessionId: "x" }, new grpc.Metadata(), deadline(), cb));
}

export function listNodes(ch: SecureChannel): Promise<ListNodesResponse> {
  return unaryCall<ListNodesResponse>((cb) => ch.client(ControlClient).listNodes({}, new grpc.Metadata(), deadline(), cb));
}

export function renew(ch: SecureChannel, csr: Buffer): Promise<RenewNodeCertificateResponse> {
  return unaryCall<RenewNodeCertificateResponse>((cb) => ch.client(CAClient).renewNodeCertificate({ csr }, new grpc.Metadata(), deadline(), cb));
}

/** Opens a Session stream; resolves with the first message, and `ended` settles with the stream's end status. */
export function openSession(ch: SecureChannel): { first: Promise<SessionMessage>; ended: Promise<ShoalError>; cancel: () => void } {
  const stream = ch.client(DispatcherClient).session({ description: undefined, addr: "" });
  let resolveFirst!: (m: SessionMessage) => void;
  let rejectFirst!: (e: unknown) => void;
  const first = new Promise<SessionMessage>((ok, fail) => {
    resolveFirst = ok;
    rejectFirst = fail;
  });
  const ended = new Promise<ShoalError>((ok) => {
    stream.on("error", (err) => {
      rejectFirst(fromGrpcError(err));
      ok(fromGrpcError(err));
    });
    stream.on("end", () => ok(new ShoalError("UNAVAILABLE", "stream ended without a status error")));
  });
  stream.on("data", (m: SessionMessage) => resolveFirst(m));
  first.catch(() => undefined);
  return { first, ended, cancel: () => stream.cancel() };
}

/** True when the error came from a Shoal handler or interceptor (it carries the stable code). */
export function fromShoal(err: unknown): boolean {
  const cause = (err as ShoalError).cause as Partial<grpc.ServiceError> | undefined;
  return cause?.metadata?.get(ERROR_CODE_METADATA)?.[0] !== undefined;
}

/** The full cluster object (CA key included) from a stopped manager's data dir (autolock off). */
export async function readClusterFromStore(dataDir: string): Promise<Cluster> {
  const paths = dataDirPaths(dataDir);
  const keys = await readDekFile(paths.dekFile);
  const store = await EncryptedStore.open(paths.stateDir, keys);
  try {
    const log = await RaftLogStorage.open(store);
    const loaded = await log.load();
    const objects = new ObjectStore();
    if (loaded.snapshot !== undefined && loaded.snapshot.metadata.index > 0) {
      const { appData } = decodeSnapshotEnvelope(loaded.snapshot.data);
      if (appData !== undefined && appData.length > 0) objects.restoreSnapshot(appData);
    }
    for (const entry of loaded.entries) {
      if (entry.type !== 0 || entry.data.length === 0 || entry.index <= objects.lastAppliedIndex) continue;
      objects.apply(entry.data, { index: entry.index });
    }
    const cluster = objects.getCluster();
    if (cluster === undefined) throw new Error("no cluster object in the store");
    return cluster;
  } finally {
    await store.close();
  }
}

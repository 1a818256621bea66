// Raft between managers over mutual TLS (DESIGN.md §4): the client side implements the driver's
// RaftTransport (one bounded queue and one batch in flight per peer, snapshots as StreamSnapshot
// chunks) and the server side hands received messages to the local RaftNode. Only manager
// certificates reach these handlers (the authorization table says so).
import * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../base/errors.js";
import type { Message, RaftId } from "../raft/core/types.js";
import type { RaftInbound, RaftTransport } from "../raft/node/index.js";
import { createSecureChannel, type SecureChannel } from "../transport/client.js";
import {
  messageFromProto,
  messageToProto,
  snapshotToChunks,
  SnapshotAssembler,
  SNAPSHOT_MESSAGE_TYPE,
  type WireMessage,
} from "../transport/raft-codec.js";
import type { RevocationState } from "../transport/revocation.js";
import type { NodeIdentityPem, SecureServer } from "../transport/server.js";
import { RaftClient, type RaftAck, type RaftMessage, type RaftMessageBatch, type RaftServer } from "../proto/shoal/v1/raft.js";
import { handlerError, type HandlerLogger } from "./handlers.js";

/** Messages waiting for one peer; beyond this they are dropped and the peer reported unreachable. */
export const MAX_QUEUED_MESSAGES_PER_PEER = 4096;
/** Messages per ProcessRaftMessages call. */
export const MAX_MESSAGES_PER_BATCH = 512;
/** Deadline of one batch; a peer that takes longer is treated as unreachable for that batch. */
export const RAFT_BATCH_DEADLINE_MS = 5_000;
export const SNAPSHOT_DEADLINE_MS = 60_000;
/** Largest snapshot a manager accepts from a peer. */
export const MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024;

export interface RaftTransportOptions {
  clusterId: string;
  rootCaPem: string;
  identity: () => NodeIdentityPem;
  revocation: RevocationState;
  logger: HandlerLogger & { debug(obj: object, msg: string): void };
}

class PeerLink {
  private channel: SecureChannel | undefined;
  private client: RaftClient | undefined;
  private queue: Message[] = [];
  private inFlight = false;
  private closed = false;

  constructor(
    readonly id: RaftId,
    readonly addr: string,
    private readonly transport: GrpcRaftTransport,
  ) {}

  private raftClient(): RaftClient {
    if (this.client === undefined) {
      const identity = this.transport.opts.identity();
      this.channel = createSecureChannel(this.addr, {
        rootCaPem: this.transport.opts.rootCaPem,
        certPem: identity.certPem,
        keyPem: identity.keyPem,
        expectServerRole: "swarm-manager",
        clusterId: this.transport.opts.clusterId,
        revocation: this.transport.opts.revocation,
        maxSendMessageBytes: 16 * 1024 * 1024,
        maxReceiveMessageBytes: 16 * 1024 * 1024,
        keepalive: { timeMs: 10_000, timeoutMs: 5_000 },
      });
      this.client = this.channel.client(RaftClient);
    }
    return this.client;
  }

  /** Drops the connection so the next send dials again with the current identity. */
  reset(): void {
    this.channel?.close();
    this.channel = undefined;
    this.client = undefined;
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.reset();
  }

  enqueue(message: Message): void {
    if (this.closed) return;
    if ((message.type as number) === SNAPSHOT_MESSAGE_TYPE) {
      this.sendSnapshot(message);
      return;
    }
    if (this.queue.length >= MAX_QUEUED_MESSAGES_PER_PEER) {
      this.transport.inbound()?.reportUnreachable(this.id);
      return;
    }
    this.queue.push(message);
    if (!this.inFlight) queueMicrotask(() => this.flush());
  }

  private flush(): void {
    if (this.inFlight || this.closed || this.queue.length === 0) return;
    const batch = this.queue.splice(0, MAX_MESSAGES_PER_BATCH);
    let request: RaftMessageBatch;
    try {
      request = { messages: batch.map((m) => messageToProto(m as unknown as WireMessage)) };
    } catch (err) {
      this.transport.opts.logger.error({ err: String(err), peer: String(this.id) }, "cannot encode raft messages");
      return;
    }
    this.inFlight = true;
    this.raftClient().processRaftMessages(request, new grpc.Metadata(), { deadline: Date.now() + RAFT_BATCH_DEADLINE_MS }, (err) => {
      this.inFlight = false;
      if (err) {
        this.transport.opts.logger.debug({ peer: String(this.id), code: err.code }, "raft batch not delivered");
        this.transport.inbound()?.reportUnreachable(this.id);
        // A failed connection is dropped so a peer that came back (or a renewed identity) is redialled.
        if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.UNAUTHENTICATED) this.reset();
      }
      this.flush();
    });
  }

  private sendSnapshot(message: Message): void {
    const report = (ok: boolean): void => this.transport.inbound()?.reportSnapshot(this.id, ok);
    let chunks: RaftMessage[];
    try {
      chunks = snapshotToChunks(message as unknown as WireMessage);
    } catch (err) {
      this.transport.opts.logger.error({ err: String(err) }, "cannot split a raft snapshot into chunks");
      report(false);
      return;
    }
    const stream = this.raftClient().streamSnapshot(new grpc.Metadata(), { deadline: Date.now() + SNAPSHOT_DEADLINE_MS }, (err) => {
      if (err) this.transport.opts.logger.warn({ peer: String(this.id), code: err.code, details: err.details }, "raft snapshot not delivered");
      report(!err);
    });
    stream.on("error", () => undefined);
    const writeNext = (i: number): void => {
      for (; i < chunks.length; i++) {
        if (!stream.write(chunks[i])) {
          const next = i + 1;
          stream.once("drain", () => writeNext(next));
          return;
        }
      }
      stream.end();
    };
    writeNext(0);
  }
}

export class GrpcRaftTransport implements RaftTransport {
  private readonly peers = new Map<RaftId, PeerLink>();
  private node: RaftInbound | undefined;

  constructor(readonly opts: RaftTransportOptions) {}

  /** The RaftNode is created after the transport; it is bound here once it exists. */
  bind(node: RaftInbound): void {
    this.node = node;
  }

  inbound(): RaftInbound | undefined {
    return this.node;
  }

  addPeer(id: RaftId, addr: string): void {
    const existing = this.peers.get(id);
    if (existing !== undefined && existing.addr === addr) return;
    existing?.close();
    this.peers.set(id, new PeerLink(id, addr, this));
  }

  removePeer(id: RaftId): void {
    this.peers.get(id)?.close();
    this.peers.delete(id);
  }

  send(messages: Message[]): void {
    for (const message of messages) {
      const peer = this.peers.get(message.to);
      if (peer === undefined) {
        this.node?.reportUnreachable(message.to);
        continue;
      }
      peer.enqueue(message);
    }
  }

  /** After a certificate renewal: reconnect every peer with the new identity. */
  identityChanged(): void {
    for (const peer of this.peers.values()) peer.reset();
  }

  close(): void {
    for (const peer of this.peers.values()) peer.close();
    this.peers.clear();
  }
}

export interface RaftServiceOptions {
  server: SecureServer;
  node: () => (RaftInbound & { status(): { members: { raftId: bigint; nodeId: string }[] } }) | undefined;
  logger: HandlerLogger & { info?(obj: object, msg: string): void };
}

/**
 * The Raft service. A message is accepted only if its sender's raft ID belongs to the node ID of
 * the certificate that sent it (when the member is known), so one manager cannot speak for another.
 */
export function raftServiceHandlers(opts: RaftServiceOptions): RaftServer {
  const checkSender = (peerNodeId: string, from: bigint): void => {
    const node = opts.node();
    const member = node?.status().members.find((m) => m.raftId === from);
    if (member !== undefined && member.nodeId !== "" && member.nodeId !== peerNodeId) {
      throw new ShoalError("PERMISSION_DENIED", `raft member ${from} belongs to another node than the caller's certificate`);
    }
  };
  return {
    processRaftMessages: (call: grpc.ServerUnaryCall<RaftMessageBatch, RaftAck>, callback: grpc.sendUnaryData<RaftAck>) => {
      try {
        const peer = opts.server.peerOf(call);
        const node = opts.node();
        if (node === undefined) throw new ShoalError("UNAVAILABLE", "this manager's raft node is not running");
        if (call.request.messages.length > MAX_MESSAGES_PER_BATCH * 4) {
          throw new ShoalError("MESSAGE_TOO_LARGE", `a raft batch may hold at most ${MAX_MESSAGES_PER_BATCH * 4} messages`);
        }
        const decoded = call.request.messages.map((p) => messageFromProto(p));
        for (const m of decoded) checkSender(peer.nodeId, m.from);
        for (const m of decoded) node.receive(m as unknown as Message);
        callback(null, {});
      } catch (err) {
        callback(handlerError(err, opts.logger));
      }
    },
    streamSnapshot: (call: grpc.ServerReadableStream<RaftMessage, RaftAck>, callback: grpc.sendUnaryData<RaftAck>) => {
      const assembler = new SnapshotAssembler({ maxTotalBytes: MAX_SNAPSHOT_BYTES });
      let failed = false;
      let peerNodeId: string;
      try {
        peerNodeId = opts.server.peerOf(call).nodeId;
      } catch (err) {
        callback(handlerError(err, opts.logger));
        return;
      }
      const fail = (err: unknown): void => {
        if (failed) return;
        failed = true;
        callback(handlerError(err, opts.logger));
        call.destroy();
      };
      call.on("data", (chunk: RaftMessage) => {
        if (failed) return;
        try {
          const whole = assembler.push(chunk);
          if (whole !== undefined) {
            checkSender(peerNodeId, whole.from);
            opts.logger.info?.({ fromNodeId: peerNodeId, bytes: assembler.receivedBytes, index: whole.snapshot?.metadata.index }, "received a raft snapshot");
            const node = opts.node();
            if (node === undefined || !node.receive(whole as unknown as Message)) {
              throw new ShoalError("UNAVAILABLE", "this manager could not take the snapshot now; retry");
            }
          }
        } catch (err) {
          fail(err);
        }
      });
      call.on("end", () => {
        if (failed) return;
        try {
          assembler.finish();
          callback(null, {});
        } catch (err) {
          fail(err);
        }
      });
      call.on("error", () => {
        failed = true;
      });
    },
  };
}

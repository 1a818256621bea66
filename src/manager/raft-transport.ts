// Raft between managers over mutual TLS (DESIGN.md §4): the client side implements the driver's
// RaftTransport (one bounded queue per peer drained into one long-lived StreamRaftMessages call,
// snapshots as StreamSnapshot chunks) and the server side hands received messages to the local
// RaftNode. Only manager certificates reach these handlers (the authorization table says so).
import * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../base/errors.js";
import { systemClock, type Clock } from "../base/clock.js";
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
import type { PeerIdentity } from "../transport/identity.js";
import type { RevocationState } from "../transport/revocation.js";
import type { NodeIdentityPem, SecureServer } from "../transport/server.js";
import { RaftClient, type RaftAck, type RaftMessage, type RaftMessageBatch, type RaftServer } from "../proto/shoal/v1/raft.js";
import { handlerError, type HandlerLogger } from "./handlers.js";
import { isHostPort } from "./membership.js";

/** Messages waiting for one peer; beyond this they are dropped and the peer reported unreachable. */
export const MAX_QUEUED_MESSAGES_PER_PEER = 4096;
/** Messages per RaftMessageBatch (one stream message, or one ProcessRaftMessages call). */
export const MAX_MESSAGES_PER_BATCH = 512;
/** Deadline of one ProcessRaftMessages call (the fallback for a peer without the stream). */
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
  /** The address this manager advertises for raft; every batch carries it (see RaftMessageBatch.sender_addr). */
  selfAddr?: string;
  /** Call deadlines are computed from it. Default: the system clock. */
  clock?: Clock;
}

/**
 * The link to one peer. Messages are written to one client-streaming call that stays open (a write
 * is one DATA frame, not a unary call: that per-call cost dominated the leader's CPU per write), in
 * order, batched per microtask. The stream's own buffer is bounded by waiting for "drain"; the
 * queue in front of it by MAX_QUEUED_MESSAGES_PER_PEER. When the stream ends with an error, the
 * messages it held may be lost, so the peer is reported unreachable and raft resends from its
 * progress; the next message opens a new stream (and a new connection after UNAVAILABLE).
 * A peer that does not serve the stream (UNIMPLEMENTED: an older manager) gets unary batches,
 * one in flight at a time.
 */
class PeerLink {
  private channel: SecureChannel | undefined;
  private client: RaftClient | undefined;
  private stream: grpc.ClientWritableStream<RaftMessageBatch> | undefined;
  /** A batch handed to the stream whose write has not completed yet; see flush(). */
  private writing = false;
  private flushScheduled = false;
  private streamUnsupported = false;
  private queue: Message[] = [];
  private inFlight = false;
  private closed = false;

  constructor(
    readonly id: RaftId,
    readonly addr: string,
    private readonly transport: GrpcRaftTransport,
  ) {}

  private secureChannel(): SecureChannel {
    if (this.channel === undefined) {
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
        noRetryBuffer: true,
      });
    }
    return this.channel;
  }

  private raftClient(): RaftClient {
    this.client ??= this.secureChannel().client(RaftClient);
    return this.client;
  }

  /** Drops the stream and the connection so the next send dials again with the current identity. */
  reset(): void {
    const stream = this.stream;
    this.stream = undefined;
    this.writing = false;
    this.streamUnsupported = false;
    stream?.cancel();
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
    this.scheduleFlush();
  }

  /** One flush per microtask, so the messages of one Ready (or several) share a batch. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /**
   * Writes one batch and waits for it to reach the connection before the next: whatever the driver
   * queues meanwhile then leaves as one message. (Writing each Ready's few messages at once instead
   * filled grpc-js's per-call buffer with hundreds of small writes that it sends one per event-loop
   * turn: at 256 clients that tripled the latency.) The queue stays bounded by enqueue().
   */
  private flush(): void {
    if (this.closed || this.queue.length === 0) return;
    if (this.streamUnsupported) {
      this.flushUnary();
      return;
    }
    if (this.writing) return;
    const stream = this.stream ?? this.openStream();
    let request: RaftMessageBatch | undefined;
    while (request === undefined && this.queue.length > 0) request = this.nextBatch();
    if (request === undefined) return;
    this.writing = true;
    stream.write(request, (err?: Error | null) => {
      // After a write error the call's own callback follows; it clears `writing` and reports the peer.
      if (this.stream !== stream || err) return;
      this.writing = false;
      this.flush();
    });
  }

  /** Takes the next batch off the queue; undefined (batch dropped and logged) if it cannot be encoded. */
  private nextBatch(): RaftMessageBatch | undefined {
    const batch = this.queue.splice(0, MAX_MESSAGES_PER_BATCH);
    try {
      return { messages: batch.map((m) => messageToProto(m as unknown as WireMessage)), senderAddr: this.transport.opts.selfAddr ?? "" };
    } catch (err) {
      this.transport.opts.logger.error({ err: String(err), peer: String(this.id) }, "cannot encode raft messages");
      return undefined;
    }
  }

  private openStream(): grpc.ClientWritableStream<RaftMessageBatch> {
    // No deadline: the stream lives as long as the connection; keepalive notices a dead peer.
    const stream = this.raftClient().streamRaftMessages(new grpc.Metadata(), {}, (err) => {
      if (this.stream !== stream) return; // reset() or a newer stream took over
      this.stream = undefined;
      this.writing = false;
      if (err) {
        if (err.code === grpc.status.UNIMPLEMENTED) {
          this.streamUnsupported = true;
          this.transport.opts.logger.debug({ peer: String(this.id) }, "peer has no raft message stream; sending unary batches");
        } else {
          this.transport.opts.logger.debug({ peer: String(this.id), code: err.code }, "raft message stream ended");
          // A failed connection is dropped so a peer that came back (or a renewed identity) is redialled.
          if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.UNAUTHENTICATED) this.reset();
        }
        // What the stream still held may be lost: raft resends once it knows.
        this.transport.inbound()?.reportUnreachable(this.id);
      }
      if (this.queue.length > 0) this.scheduleFlush();
    });
    stream.on("error", () => undefined); // reported through the callback above
    this.stream = stream;
    return stream;
  }

  private flushUnary(): void {
    if (this.inFlight || this.closed || this.queue.length === 0) return;
    const request = this.nextBatch();
    if (request === undefined) {
      this.flushUnary();
      return;
    }
    this.inFlight = true;
    this.raftClient().processRaftMessages(request, new grpc.Metadata(), { deadline: (this.transport.opts.clock ?? systemClock).nowMs() + RAFT_BATCH_DEADLINE_MS }, (err) => {
      this.inFlight = false;
      if (err) {
        this.transport.opts.logger.debug({ peer: String(this.id), code: err.code }, "raft batch not delivered");
        this.transport.inbound()?.reportUnreachable(this.id);
        if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.UNAUTHENTICATED) this.reset();
      }
      this.flushUnary();
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
    const stream = this.raftClient().streamSnapshot(new grpc.Metadata(), { deadline: (this.transport.opts.clock ?? systemClock).nowMs() + SNAPSHOT_DEADLINE_MS }, (err) => {
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
  /** Ends a message stream whose client certificate expired while it was open. Default: system clock. */
  clock?: Clock;
}

/**
 * The Raft service. A message is accepted only if its sender's raft ID belongs to the node ID of
 * the certificate that sent it (when the member is known), so one manager cannot speak for another.
 */
export function raftServiceHandlers(opts: RaftServiceOptions): RaftServer {
  const clock = opts.clock ?? systemClock;
  const checkSenders = (peerNodeId: string, messages: WireMessage[], node: NonNullable<ReturnType<RaftServiceOptions["node"]>>): void => {
    let members: { raftId: bigint; nodeId: string }[] | undefined;
    for (const m of messages) {
      members ??= node.status().members;
      const member = members.find((x) => x.raftId === m.from);
      if (member !== undefined && member.nodeId !== "" && member.nodeId !== peerNodeId) {
        throw new ShoalError("PERMISSION_DENIED", `raft member ${m.from} belongs to another node than the caller's certificate`);
      }
    }
  };
  const checkSender = (peerNodeId: string, from: bigint): void => {
    const node = opts.node();
    const member = node?.status().members.find((m) => m.raftId === from);
    if (member !== undefined && member.nodeId !== "" && member.nodeId !== peerNodeId) {
      throw new ShoalError("PERMISSION_DENIED", `raft member ${from} belongs to another node than the caller's certificate`);
    }
  };
  /** Checks and hands one batch to the local node; throws ShoalError on anything it refuses. */
  const deliver = (peer: PeerIdentity, batch: RaftMessageBatch): void => {
    const node = opts.node();
    if (node === undefined) throw new ShoalError("UNAVAILABLE", "this manager's raft node is not running");
    if (batch.messages.length > MAX_MESSAGES_PER_BATCH * 4) {
      throw new ShoalError("MESSAGE_TOO_LARGE", `a raft batch may hold at most ${MAX_MESSAGES_PER_BATCH * 4} messages`);
    }
    const decoded = batch.messages.map((p) => messageFromProto(p));
    checkSenders(peer.nodeId, decoded, node);
    // A malformed address is ignored rather than refused: the messages themselves are good.
    const sender = batch.senderAddr !== "" && isHostPort(batch.senderAddr) ? { addr: batch.senderAddr, nodeId: peer.nodeId } : undefined;
    for (const m of decoded) node.receive(m as unknown as Message, sender);
  };

  return {
    streamRaftMessages: (call: grpc.ServerReadableStream<RaftMessageBatch, RaftAck>, callback: grpc.sendUnaryData<RaftAck>) => {
      let peer: PeerIdentity;
      try {
        peer = opts.server.peerOf(call);
      } catch (err) {
        callback(handlerError(err, opts.logger));
        return;
      }
      let ended = false;
      const fail = (err: unknown): void => {
        if (ended) return;
        ended = true;
        callback(handlerError(err, opts.logger));
        call.destroy();
      };
      call.on("data", (batch: RaftMessageBatch) => {
        if (ended) return;
        try {
          // The certificate was checked when the stream opened; one that expires meanwhile ends it
          // (revocation ends it at once through the authorizer's open-call registry).
          if (clock.nowMs() >= peer.notAfter.getTime()) throw new ShoalError("CERT_EXPIRED", "the client certificate expired during the raft stream: renew it");
          deliver(peer, batch);
        } catch (err) {
          fail(err);
        }
      });
      call.on("end", () => {
        if (ended) return;
        ended = true;
        callback(null, {});
      });
      call.on("error", () => {
        ended = true;
      });
    },
    processRaftMessages: (call: grpc.ServerUnaryCall<RaftMessageBatch, RaftAck>, callback: grpc.sendUnaryData<RaftAck>) => {
      try {
        deliver(opts.server.peerOf(call), call.request);
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

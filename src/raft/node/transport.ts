// How the Raft driver talks to its peers. `src/raft` may not import `src/transport` (same layer),
// so the driver declares what it needs here and the daemon passes the gRPC implementation in.
// The in-process loopback network below is the single-process implementation.
import { ShoalError } from "../../base/errors.js";
import { MessageType, type Message, type RaftId } from "../core/types.js";

export interface RaftTransport {
  /** Non-blocking; a bounded queue per peer. On overflow it drops and reports the peer unreachable. */
  send(messages: Message[]): void;
  addPeer(id: RaftId, addr: string): void;
  removePeer(id: RaftId): void;
}

/**
 * Who sent an inbound message, as the transport authenticated it: the address the sender advertises
 * for itself and (over mutual TLS) the node ID of its certificate.
 */
export interface RaftSender {
  addr: string;
  nodeId?: string;
}

/** What a transport calls on the local node: delivery of inbound messages and delivery reports. */
export interface RaftInbound {
  /**
   * An inbound message; returns false when the node's queue is full and the message was dropped.
   * `sender` lets a member answer a peer whose AddLearner it has not applied yet.
   */
  receive(message: Message, sender?: RaftSender): boolean;
  reportUnreachable(id: RaftId): void;
  reportSnapshot(id: RaftId, ok: boolean): void;
}

export interface LoopbackOptions {
  /** Messages waiting for one peer before new ones are dropped. */
  maxQueuedPerPeer?: number;
}

/**
 * Connects RaftNodes inside one process. Each node gets its own `RaftTransport` from
 * `transportFor(id)` and registers its inbound side with `attach(id, node)`. Delivery is
 * asynchronous (a macrotask later), in order per peer, with a bounded queue per (sender, peer);
 * a detached node is unreachable, as a crashed process would be.
 */
export class LoopbackNetwork {
  private readonly nodes = new Map<RaftId, RaftInbound>();
  /** Links cut by `partition` (both directions are listed). */
  private readonly cut = new Set<string>();
  readonly maxQueuedPerPeer: number;

  constructor(options: LoopbackOptions = {}) {
    this.maxQueuedPerPeer = options.maxQueuedPerPeer ?? 4096;
  }

  attach(id: RaftId, node: RaftInbound): void {
    this.nodes.set(id, node);
  }

  detach(id: RaftId): void {
    this.nodes.delete(id);
  }

  /** Cuts (or with `false` heals) the link between two nodes in both directions. */
  setLink(a: RaftId, b: RaftId, up: boolean): void {
    for (const key of [`${a}>${b}`, `${b}>${a}`]) {
      if (up) this.cut.delete(key);
      else this.cut.add(key);
    }
  }

  /** `addr` is what the node's messages say it can be reached at (default: its raft ID). */
  transportFor(id: RaftId, addr = String(id)): RaftTransport {
    return new LoopbackTransport(this, id, addr);
  }

  /** @internal used by LoopbackTransport. */
  lookup(from: RaftId, to: RaftId): RaftInbound | undefined {
    if (this.cut.has(`${from}>${to}`)) return undefined;
    return this.nodes.get(to);
  }

  /** @internal */
  local(id: RaftId): RaftInbound | undefined {
    return this.nodes.get(id);
  }
}

class LoopbackTransport implements RaftTransport {
  private readonly peers = new Map<RaftId, string>();
  private readonly queues = new Map<RaftId, Message[]>();
  private readonly flushScheduled = new Set<RaftId>();

  constructor(
    private readonly network: LoopbackNetwork,
    private readonly selfId: RaftId,
    private readonly selfAddr: string,
  ) {}

  addPeer(id: RaftId, addr: string): void {
    this.peers.set(id, addr);
  }

  removePeer(id: RaftId): void {
    this.peers.delete(id);
    this.queues.delete(id);
  }

  send(messages: Message[]): void {
    for (const message of messages) {
      if (message.from !== this.selfId) {
        throw new ShoalError("INTERNAL", `loopback transport of raft ID ${this.selfId} asked to send a message from ${message.from}`);
      }
      // An address is not needed in-process, but an unknown peer is still unknown: report it.
      if (!this.peers.has(message.to)) {
        this.reportFailure(message);
        continue;
      }
      let queue = this.queues.get(message.to);
      if (queue === undefined) {
        queue = [];
        this.queues.set(message.to, queue);
      }
      if (queue.length >= this.network.maxQueuedPerPeer) {
        this.reportFailure(message);
        continue;
      }
      queue.push(message);
      this.scheduleFlush(message.to);
    }
  }

  private scheduleFlush(to: RaftId): void {
    if (this.flushScheduled.has(to)) return;
    this.flushScheduled.add(to);
    setImmediate(() => {
      this.flushScheduled.delete(to);
      const queue = this.queues.get(to);
      if (queue === undefined || queue.length === 0) return;
      this.queues.set(to, []);
      for (const message of queue) this.deliver(message);
    });
  }

  private deliver(message: Message): void {
    const target = this.network.lookup(this.selfId, message.to);
    if (target === undefined || !target.receive(message, { addr: this.selfAddr })) {
      this.reportFailure(message);
      return;
    }
    if (message.type === MessageType.Snapshot) this.network.local(this.selfId)?.reportSnapshot(message.to, true);
  }

  private reportFailure(message: Message): void {
    const self = this.network.local(this.selfId);
    if (self === undefined) return;
    self.reportUnreachable(message.to);
    if (message.type === MessageType.Snapshot) self.reportSnapshot(message.to, false);
  }
}

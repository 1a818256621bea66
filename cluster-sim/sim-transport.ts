// RaftNode's transport in the simulation: a thin adapter that hands each message to the simulated
// network (which delays, drops, duplicates, reorders and partitions it) and, like the real
// transports, reports a peer it does not know as unreachable instead of sending.
import type { Message, RaftId } from "../src/raft/core/types.js";
import type { RaftTransport } from "../src/raft/node/index.js";

export class SimTransport implements RaftTransport {
  private readonly peers = new Set<RaftId>();

  constructor(
    /** Puts one message on the simulated wire. */
    private readonly wire: (m: Message) => void,
    /** A message to a peer this node was never told about. */
    private readonly unknownPeer: (m: Message) => void,
  ) {}

  send(messages: Message[]): void {
    for (const m of messages) {
      if (this.peers.has(m.to)) this.wire(m);
      else this.unknownPeer(m);
    }
  }

  addPeer(id: RaftId): void {
    this.peers.add(id);
  }

  removePeer(id: RaftId): void {
    this.peers.delete(id);
  }
}

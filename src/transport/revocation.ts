// The revocation list as the transport sees it: node IDs and certificate serials that must be refused
// on every call, versioned so caches can tell when they went stale, with listeners so that a server
// can end the open streams of a peer the moment it is revoked (DESIGN.md §3 rule 3).
import { normaliseSerial } from "./identity.js";

export interface RevocationSnapshot {
  nodeIds: readonly string[];
  serials: readonly string[];
}

export interface RevocationChange {
  /** Node IDs and serials that became revoked with this change (normalised serials). */
  addedNodeIds: readonly string[];
  addedSerials: readonly string[];
  version: number;
}

export type RevocationListener = (change: RevocationChange) => void;

export class RevocationState {
  private readonly nodeIds = new Set<string>();
  private readonly serials = new Set<string>();
  private readonly listeners = new Set<RevocationListener>();
  private currentVersion = 0;

  constructor(initial?: RevocationSnapshot) {
    if (initial) this.replace(initial);
  }

  /** Bumped on every change; lets caches of verified identities notice a new list. */
  get version(): number {
    return this.currentVersion;
  }

  /** How many node IDs and certificate serials the list holds. */
  get size(): { nodeIds: number; serials: number } {
    return { nodeIds: this.nodeIds.size, serials: this.serials.size };
  }

  isRevoked(nodeId: string, serial: string): boolean {
    return this.nodeIds.has(nodeId) || this.serials.has(normaliseSerial(serial));
  }

  isNodeRevoked(nodeId: string): boolean {
    return this.nodeIds.has(nodeId);
  }

  isSerialRevoked(serial: string): boolean {
    return this.serials.has(normaliseSerial(serial));
  }

  /** Adds to the list (revocation is permanent: a removed node returns only as a new node ID). */
  revoke(entries: { nodeIds?: readonly string[]; serials?: readonly string[] }): void {
    const addedNodeIds = (entries.nodeIds ?? []).filter((id) => !this.nodeIds.has(id));
    const addedSerials = (entries.serials ?? []).map(normaliseSerial).filter((s) => !this.serials.has(s));
    if (addedNodeIds.length === 0 && addedSerials.length === 0) return;
    for (const id of addedNodeIds) this.nodeIds.add(id);
    for (const s of addedSerials) this.serials.add(s);
    this.notify({ addedNodeIds, addedSerials, version: ++this.currentVersion });
  }

  /**
   * Sets the whole list, e.g. from a replicated snapshot or a session push. Entries missing from
   * `next` are dropped (only a store restore should ever shrink the list).
   */
  replace(next: RevocationSnapshot): void {
    const nextSerials = new Set(next.serials.map(normaliseSerial));
    const nextIds = new Set(next.nodeIds);
    const addedNodeIds = [...nextIds].filter((id) => !this.nodeIds.has(id));
    const addedSerials = [...nextSerials].filter((s) => !this.serials.has(s));
    const shrank = [...this.nodeIds].some((id) => !nextIds.has(id)) || [...this.serials].some((s) => !nextSerials.has(s));
    if (addedNodeIds.length === 0 && addedSerials.length === 0 && !shrank) return;
    this.nodeIds.clear();
    this.serials.clear();
    for (const id of nextIds) this.nodeIds.add(id);
    for (const s of nextSerials) this.serials.add(s);
    this.notify({ addedNodeIds, addedSerials, version: ++this.currentVersion });
  }

  snapshot(): RevocationSnapshot {
    return { nodeIds: [...this.nodeIds].sort(), serials: [...this.serials].sort() };
  }

  /** Returns the function that unsubscribes. */
  subscribe(listener: RevocationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(change: RevocationChange): void {
    for (const listener of this.listeners) listener(change);
  }
}

// Agent sessions on the leader: one per node, each bound to the certificate it was opened with, and
// the binding check every other dispatcher call goes through (a session ID works only for the node
// whose certificate opened it, so one worker cannot read or report as another).
import type * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../../base/errors.js";
import type { SessionMessage, SessionRequest } from "../../proto/shoal/v1/dispatcher.js";
import type { PeerIdentity } from "../../transport/identity.js";

export const MAX_SESSIONS = 10_000;
/**
 * One session per node: a new session of a node replaces (ends) its older one, as SwarmKit does. A
 * cap with a refusal was rejected: an agent whose link dropped would be locked out until its old,
 * half-open stream timed out, while replacing loses nothing (the agent abandoned that stream) and
 * only the node itself, by its certificate, can replace its own session.
 */
export const MAX_SESSIONS_PER_NODE = 1;

export interface Session {
  readonly id: string;
  readonly nodeId: string;
  /** The certificate the session was opened with: its serial and its zone (DESIGN rule 7). */
  readonly serial: string;
  readonly certZone: string;
  readonly call: grpc.ServerWritableStream<SessionRequest, SessionMessage>;
}

export type SessionEndListener = (session: Session, why: ShoalError) => void;

export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();
  /** The current session of each node (MAX_SESSIONS_PER_NODE). */
  private readonly sessionByNode = new Map<string, Session>();
  private readonly endListeners = new Set<SessionEndListener>();

  get size(): number {
    return this.sessions.size;
  }

  values(): IterableIterator<Session> {
    return this.sessions.values();
  }

  hasNode(nodeId: string): boolean {
    return this.sessionByNode.has(nodeId);
  }

  /** Runs when a session is forgotten (ended by the agent, replaced, or ended by the manager). */
  onEnd(listener: SessionEndListener): () => void {
    this.endListeners.add(listener);
    return () => this.endListeners.delete(listener);
  }

  /** Registers a node's new session; returns the one it replaces (already forgotten), if any. */
  add(session: Session): Session | undefined {
    if (this.sessions.size >= MAX_SESSIONS && !this.sessionByNode.has(session.nodeId)) {
      throw new ShoalError("QUEUE_FULL", "this manager holds too many sessions; retry later");
    }
    const previous = this.sessionByNode.get(session.nodeId);
    if (previous !== undefined) {
      this.forget(previous, new ShoalError("FAILED_PRECONDITION", `node ${session.nodeId} opened a newer session on this manager, which replaces this one`));
    }
    this.sessions.set(session.id, session);
    this.sessionByNode.set(session.nodeId, session);
    return previous;
  }

  forget(session: Session, why: ShoalError): void {
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    if (this.sessionByNode.get(session.nodeId) === session) this.sessionByNode.delete(session.nodeId);
    for (const listener of [...this.endListeners]) listener(session, why);
  }

  /** Forgets every session (leadership lost, shutdown); the caller ends their streams. */
  clear(why: ShoalError): Session[] {
    const all = [...this.sessions.values()];
    for (const session of all) this.forget(session, why);
    return all;
  }

  /**
   * The caller's own current session, or a refusal: NOT_FOUND when no such session is open here
   * (the agent opens a new one), PERMISSION_DENIED when the session belongs to another node than the
   * caller's certificate names.
   */
  bind(sessionId: string, peer: Pick<PeerIdentity, "nodeId">): Session {
    const session = this.sessions.get(sessionId);
    if (session === undefined) throw new ShoalError("NOT_FOUND", "no such session on this manager; open a new session");
    if (session.nodeId !== peer.nodeId) {
      throw new ShoalError("PERMISSION_DENIED", `session ${sessionId} belongs to another node than the certificate's (${peer.nodeId}); a node uses only its own session`);
    }
    return session;
  }
}

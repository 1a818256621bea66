// The agent's dispatcher session: one mTLS channel to the leader (following `shoal-leader-addr`
// hints, rotating through the known managers with backoff), the Session stream the managers push
// the node's object and the revocation list on, and heartbeats at the period the dispatcher asks for.
// While a session is up, `onConnected` hands its link to the parts that ride on it (assignments, task
// status); `onDisconnected` takes it back.
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ShoalError, isShoalError } from "../base/errors.js";
import type { Clock, Timer } from "../base/clock.js";
import { DispatcherClient, type HeartbeatResponse, type SessionMessage } from "../proto/shoal/v1/dispatcher.js";
import type { NodeDescription } from "../proto/shoal/v1/objects.js";
import { createSecureChannel, type SecureChannel } from "../transport/client.js";
import { fromGrpcError } from "../transport/errors.js";
import { leaderHintOf } from "../transport/leader.js";
import type { RevocationState } from "../transport/revocation.js";

export const SESSION_RETRY_MIN_MS = 100;
export const SESSION_RETRY_MAX_MS = 2_000;
export const CALL_DEADLINE_MS = 10_000;
/** Heartbeat periods the dispatcher may ask for are clamped to this range. */
const MIN_HEARTBEAT_MS = 100;
const MAX_HEARTBEAT_MS = 60_000;

export interface AgentIdentity {
  certPem: string;
  keyPem: string;
}

/** A live session: what the assignments stream and the status reporter call on. */
export interface SessionLink {
  readonly sessionId: string;
  readonly addr: string;
  readonly dispatcher: DispatcherClient;
}

export interface SessionOptions {
  clusterId: string;
  rootCaPem: string;
  managers: string[];
  identity: () => AgentIdentity;
  advertiseAddr: string;
  /** What this node reports about itself with each new session. */
  description: () => NodeDescription;
  revocation: RevocationState;
  clock: Clock;
  logger: Logger;
  onMessage: (message: SessionMessage) => void;
  onConnected: (link: SessionLink) => void;
  onDisconnected: () => void;
  /** The managers refused this node as removed. */
  onRemoved: () => void;
  /** Settles when a certificate renewal in flight (if any) is done. */
  renewalSettled: () => Promise<void>;
}

function isRemoval(err: unknown): boolean {
  return isShoalError(err, "CERT_REVOKED");
}

export class DispatcherSession {
  private managers: string[];
  private preferred: string | undefined;
  private rotateIndex = 0;
  private stopped = true;
  private channel: SecureChannel | undefined;
  private channelAddr: string | undefined;
  private stream: grpc.ClientReadableStream<SessionMessage> | undefined;
  private heartbeatTimer: Timer | undefined;
  private loop: Promise<void> = Promise.resolve();
  private connected = false;
  private readonly log: Logger;

  constructor(private readonly opts: SessionOptions) {
    this.managers = [...new Set(opts.managers.filter((m) => m !== ""))];
    this.log = opts.logger;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** The manager holding this node's session: the leader (sessions are served by the leader only). */
  get sessionAddr(): string | undefined {
    return this.connected ? this.channelAddr : undefined;
  }

  /** The address of the open channel, connected or not. */
  get currentAddr(): string | undefined {
    return this.channelAddr;
  }

  get knownManagers(): readonly string[] {
    return this.managers;
  }

  /** Replaces the known managers with the ones a session message lists. */
  learnManagers(addrs: string[]): void {
    if (addrs.length > 0) this.managers = [...new Set(addrs)];
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Stops reconnecting (the node was removed, or the agent stops). */
  markStopped(): void {
    this.stopped = true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopHeartbeat();
    this.stream?.cancel();
    await this.loop.catch(() => undefined);
    this.closeChannel();
  }

  /** Ends the session and the channel, so the next session uses the current identity. */
  reconnect(): void {
    this.closeChannel();
    this.stream?.cancel();
  }

  closeChannel(): void {
    this.channel?.close();
    this.channel = undefined;
    this.channelAddr = undefined;
  }

  /** The channel to `addr` with the node's current identity (reused while the address is the same). */
  openChannel(addr: string): SecureChannel {
    if (this.channel !== undefined && this.channelAddr === addr) return this.channel;
    this.closeChannel();
    const identity = this.opts.identity();
    this.channel = createSecureChannel(addr, {
      rootCaPem: this.opts.rootCaPem,
      certPem: identity.certPem,
      keyPem: identity.keyPem,
      expectServerRole: "swarm-manager",
      clusterId: this.opts.clusterId,
      revocation: this.opts.revocation,
      keepalive: { timeMs: 10_000, timeoutMs: 5_000 },
    });
    this.channelAddr = addr;
    return this.channel;
  }

  nextAddr(): string {
    if (this.preferred !== undefined) {
      const addr = this.preferred;
      this.preferred = undefined;
      return addr;
    }
    if (this.managers.length === 0) throw new ShoalError("UNAVAILABLE", "this node knows no manager to connect to");
    const addr = this.managers[this.rotateIndex % this.managers.length]!;
    this.rotateIndex++;
    return addr;
  }

  private async run(): Promise<void> {
    let delayMs = SESSION_RETRY_MIN_MS;
    while (!this.stopped) {
      let addr: string;
      try {
        addr = this.nextAddr();
      } catch {
        await this.opts.clock.sleep(SESSION_RETRY_MAX_MS);
        continue;
      }
      const sessionCertPem = this.opts.identity().certPem;
      try {
        await this.runSession(addr);
        delayMs = SESSION_RETRY_MIN_MS;
      } catch (err) {
        if (this.stopped) return;
        const shoal = fromGrpcError(err);
        if (isRemoval(shoal) && (await this.identityReplacedSince(sessionCertPem))) {
          // A demoted manager's earlier certificates are revoked by serial once it uses its worker
          // certificate: a call still open on the old one ends, but the node itself was not removed.
          this.log.info({}, "the session on the previous certificate was refused; reconnecting with the renewed one");
          this.closeChannel();
          continue;
        }
        if (this.stopped) return; // the renewal awaited above found the node removed and said so
        if (isRemoval(shoal)) {
          this.log.warn({ code: shoal.code }, "the managers refuse this node: it was removed from the cluster");
          this.stopped = true;
          this.opts.onRemoved();
          return;
        }
        const hint = leaderHintOf(err) ?? leaderHintOf(shoal);
        if (hint !== undefined && hint !== addr) {
          this.preferred = hint;
          if (!this.managers.includes(hint)) this.managers.push(hint);
          await this.opts.clock.sleep(20);
          continue;
        }
        this.log.debug({ addr, code: shoal.code, message: shoal.message }, "session ended; trying another manager");
        this.closeChannel();
        await this.opts.clock.sleep(delayMs);
        delayMs = Math.min(SESSION_RETRY_MAX_MS, delayMs * 2);
      } finally {
        this.stopHeartbeat();
        if (this.connected) {
          this.connected = false;
          this.opts.onDisconnected();
        }
      }
    }
  }

  /** True when the node's certificate changed since `certPem` was in use (waiting for a renewal in flight). */
  private async identityReplacedSince(certPem: string): Promise<boolean> {
    await this.opts.renewalSettled();
    return this.opts.identity().certPem !== certPem;
  }

  private stopHeartbeat(): void {
    this.heartbeatTimer?.cancel();
    this.heartbeatTimer = undefined;
  }

  private runSession(addr: string): Promise<void> {
    const channel = this.openChannel(addr);
    const dispatcher = channel.client(DispatcherClient);
    return new Promise<void>((resolve, reject) => {
      const stream = dispatcher.session({ description: this.opts.description(), addr: this.opts.advertiseAddr });
      this.stream = stream;
      let sessionId = "";
      let settled = false;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        this.stopHeartbeat();
        if (this.stream === stream) this.stream = undefined;
        stream.cancel();
        if (err === undefined) resolve();
        else reject(err);
      };
      const beat = (): void => {
        // gRPC deadlines are wall-clock instants on the wire.
        dispatcher.heartbeat({ sessionId }, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res?: HeartbeatResponse) => {
          if (settled) return;
          if (err) {
            finish(err);
            return;
          }
          if (!this.connected) {
            this.connected = true;
            this.opts.onConnected({ sessionId, addr, dispatcher });
          }
          this.heartbeatTimer = this.opts.clock.setTimeout(beat, Math.max(MIN_HEARTBEAT_MS, Math.min(res?.periodMs ?? 1000, MAX_HEARTBEAT_MS)));
        });
      };
      stream.on("data", (message: SessionMessage) => {
        const first = sessionId === "";
        sessionId = message.sessionId;
        this.opts.onMessage(message);
        if (first) beat();
      });
      stream.on("error", (err) => finish(err));
      stream.on("end", () => finish(new ShoalError("UNAVAILABLE", "the manager ended the session")));
    });
  }
}

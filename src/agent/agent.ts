// The node agent (workers and managers): a dispatcher session with heartbeats to the leader
// (following `shoal-leader-addr` hints, rotating through the known managers), the revocation list
// the managers push, and certificate renewal at a random 50–80 % of the lifetime, or at once when
// the store says the node's role or zone changed.
import * as grpc from "@grpc/grpc-js";
import type { KeyObject } from "node:crypto";
import type { Logger } from "pino";
import { ShoalError, isShoalError } from "../base/errors.js";
import type { Clock } from "../base/clock.js";
import type { Random } from "../base/random.js";
import { createNodeKeyAndCsr, DEFAULT_ZONE, parseNodeCertificate, pickRenewalTime, type NodeRole } from "../ca/index.js";
import { CAClient, type RenewNodeCertificateResponse } from "../proto/shoal/v1/ca.js";
import { DispatcherClient, type HeartbeatResponse, type SessionMessage } from "../proto/shoal/v1/dispatcher.js";
import { NodeRole as ProtoNodeRole } from "../proto/shoal/v1/objects.js";
import { createSecureChannel, unaryCall, type SecureChannel } from "../transport/client.js";
import { fromGrpcError } from "../transport/errors.js";
import { leaderHintOf } from "../transport/leader.js";
import { caPeerVerifier, type PeerVerifier } from "../transport/identity.js";
import { RevocationState } from "../transport/revocation.js";

export const SESSION_RETRY_MIN_MS = 100;
export const SESSION_RETRY_MAX_MS = 2_000;
export const CALL_DEADLINE_MS = 10_000;
/**
 * Scheduled renewals are at least this far apart, so a node whose clock runs ahead (and thus always
 * sees its new certificate past 80 %) does not renew in a tight loop.
 */
export const MIN_SCHEDULED_RENEWAL_INTERVAL_MS = 60_000;
/** setTimeout cannot wait longer than this; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const ZONE_LABEL = "zone";

export interface AgentIdentity {
  certPem: string;
  keyPem: string;
}

export interface RenewedCertificate {
  certPem: string;
  privateKey: KeyObject;
  role: NodeRole;
}

export interface AgentOptions {
  nodeId: string;
  clusterId: string;
  rootCaPem: string;
  /** Managers to try first (the join address, the remembered managers). */
  managers: string[];
  identity: () => AgentIdentity;
  advertiseAddr: string;
  hostname: string;
  clock: Clock;
  random: Random;
  logger: Logger;
  onSessionMessage?: (message: SessionMessage) => void;
  /** Persist the new certificate and key and switch to them; the agent reconnects afterwards. */
  onRenewed: (renewed: RenewedCertificate) => Promise<void>;
  /** The managers refused this node as removed: it must join again with a token. */
  onRemoved: () => void;
}

function isRemoval(err: unknown): boolean {
  return isShoalError(err, "CERT_REVOKED");
}

export class Agent {
  /** The list the managers push with every session message (node IDs and serials). */
  readonly revocation = new RevocationState();
  /**
   * Checks a P2P peer's certificate: chain to this cluster's root, dates, cluster, and the pushed
   * revocation list, so a removed node is refused as a peer as soon as the list arrives.
   */
  readonly peerVerifier: PeerVerifier;
  private managers: string[];
  private preferred: string | undefined;
  private rotateIndex = 0;
  private stopped = true;
  private channel: SecureChannel | undefined;
  private channelAddr: string | undefined;
  private stream: grpc.ClientReadableStream<SessionMessage> | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private renewalTimer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private lastRenewalMs: number | undefined;
  private loop: Promise<void> = Promise.resolve();
  private lastMessage: SessionMessage | undefined;
  private connected = false;
  private readonly log: Logger;

  constructor(private readonly opts: AgentOptions) {
    this.managers = [...new Set(opts.managers.filter((m) => m !== ""))];
    this.log = opts.logger.child({ component: "agent" });
    this.peerVerifier = caPeerVerifier({ rootCaPem: opts.rootCaPem, clusterId: opts.clusterId, clock: opts.clock, revocation: this.revocation });
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** The manager holding this node's session: the leader (sessions are served by the leader only). */
  get sessionAddr(): string | undefined {
    return this.connected ? this.channelAddr : undefined;
  }

  get knownManagers(): readonly string[] {
    return this.managers;
  }

  get lastSession(): SessionMessage | undefined {
    return this.lastMessage;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.scheduleRenewal();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.renewalTimer !== undefined) clearTimeout(this.renewalTimer);
    this.stopHeartbeat();
    this.stream?.cancel();
    await this.loop.catch(() => undefined);
    await this.renewing?.catch(() => undefined);
    this.closeChannel();
  }

  private closeChannel(): void {
    this.channel?.close();
    this.channel = undefined;
    this.channelAddr = undefined;
  }

  private openChannel(addr: string): SecureChannel {
    if (this.channel !== undefined && this.channelAddr === addr) return this.channel;
    this.closeChannel();
    const identity = this.opts.identity();
    this.channel = createSecureChannel(addr, {
      rootCaPem: this.opts.rootCaPem,
      certPem: identity.certPem,
      keyPem: identity.keyPem,
      expectServerRole: "swarm-manager",
      clusterId: this.opts.clusterId,
      revocation: this.revocation,
      keepalive: { timeMs: 10_000, timeoutMs: 5_000 },
    });
    this.channelAddr = addr;
    return this.channel;
  }

  private nextAddr(): string {
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
        await this.sleep(SESSION_RETRY_MAX_MS);
        continue;
      }
      const sessionCertPem = this.opts.identity().certPem;
      try {
        await this.runSession(addr);
        delayMs = SESSION_RETRY_MIN_MS;
      } catch (err) {
        this.connected = false;
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
          await this.sleep(20);
          continue;
        }
        this.log.debug({ addr, code: shoal.code, message: shoal.message }, "session ended; trying another manager");
        this.closeChannel();
        await this.sleep(delayMs);
        delayMs = Math.min(SESSION_RETRY_MAX_MS, delayMs * 2);
      } finally {
        this.stopHeartbeat();
      }
    }
  }

  /** True when the node's certificate changed since `certPem` was in use (waiting for a renewal in flight). */
  private async identityReplacedSince(certPem: string): Promise<boolean> {
    await this.renewing?.catch(() => undefined);
    return this.opts.identity().certPem !== certPem;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms).unref());
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer !== undefined) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private runSession(addr: string): Promise<void> {
    const channel = this.openChannel(addr);
    const dispatcher = channel.client(DispatcherClient);
    return new Promise<void>((resolve, reject) => {
      const stream = dispatcher.session({ description: { hostname: this.opts.hostname, platform: `${process.platform}/${process.arch}`, engineVersion: "", engineLabels: {}, executors: [], resources: undefined }, addr: this.opts.advertiseAddr });
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
        dispatcher.heartbeat({ sessionId }, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res?: HeartbeatResponse) => {
          if (settled) return;
          if (err) {
            finish(err);
            return;
          }
          this.connected = true;
          this.heartbeatTimer = setTimeout(beat, Math.max(100, Math.min(res?.periodMs ?? 1000, 60_000)));
        });
      };
      stream.on("data", (message: SessionMessage) => {
        const first = sessionId === "";
        sessionId = message.sessionId;
        this.onMessage(message);
        if (first) beat();
      });
      stream.on("error", (err) => finish(err));
      stream.on("end", () => finish(new ShoalError("UNAVAILABLE", "the manager ended the session")));
    });
  }

  private onMessage(message: SessionMessage): void {
    this.lastMessage = message;
    const addrs = message.managers.map((m) => m.addr).filter((a) => a !== "");
    if (addrs.length > 0) this.managers = [...new Set(addrs)];
    this.revocation.replace({ nodeIds: message.revokedNodeIds, serials: message.revokedSerials });
    try {
      this.opts.onSessionMessage?.(message);
    } catch (err) {
      this.log.error({ err: String(err) }, "session message listener failed");
    }
    const node = message.node;
    if (node === undefined) return;
    const cert = parseNodeCertificate(this.opts.identity().certPem);
    const wantRole: NodeRole = node.spec?.desiredRole === ProtoNodeRole.NODE_ROLE_MANAGER ? "swarm-manager" : "swarm-worker";
    const wantZone = node.spec?.labels[ZONE_LABEL] || DEFAULT_ZONE;
    if (wantRole !== cert.role || wantZone !== cert.zone) {
      this.log.info({ from: cert.role, to: wantRole, zoneChanged: wantZone !== cert.zone }, "role or zone changed in the store: renewing the certificate now");
      void this.renewNow().catch((err) => this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "certificate renewal failed"));
    }
  }

  private scheduleRenewal(): void {
    if (this.renewalTimer !== undefined) clearTimeout(this.renewalTimer);
    if (this.stopped) return;
    const cert = parseNodeCertificate(this.opts.identity().certPem);
    const at = pickRenewalTime({ notBefore: cert.notBefore, notAfter: cert.notAfter, random: this.opts.random });
    const floorMs = this.lastRenewalMs === undefined ? 0 : this.lastRenewalMs + MIN_SCHEDULED_RENEWAL_INTERVAL_MS - Date.now();
    const arm = (): void => {
      const waitMs = Math.max(at.getTime() - this.opts.clock.nowMs(), floorMs);
      if (waitMs > MAX_TIMER_MS) {
        this.renewalTimer = setTimeout(arm, MAX_TIMER_MS);
      } else {
        this.renewalTimer = setTimeout(() => {
          void this.renewNow().catch((err) => {
            this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "scheduled certificate renewal failed; retrying in 10 s");
            this.renewalTimer = setTimeout(() => this.scheduleRenewal(), 10_000);
          });
        }, Math.max(0, waitMs));
      }
      this.renewalTimer.unref();
    };
    arm();
  }

  /** Renews the certificate now (one renewal at a time); the new one has the store's role and zone. */
  renewNow(): Promise<void> {
    this.renewing ??= this.renew().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async renew(): Promise<void> {
    const { privateKey, csrPem } = await createNodeKeyAndCsr();
    let lastErr: unknown;
    let addr = this.channelAddr ?? this.nextAddr();
    for (let hop = 0; hop < 4 && !this.stopped; hop++) {
      const channel = this.openChannel(addr);
      const ca = channel.client(CAClient);
      try {
        const res = await unaryCall<RenewNodeCertificateResponse>((cb) =>
          ca.renewNodeCertificate({ csr: Buffer.from(csrPem) }, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, cb),
        );
        const certPem = Buffer.from(res.certificate).toString("utf8");
        const info = parseNodeCertificate(certPem);
        if (info.nodeId !== this.opts.nodeId || info.clusterId !== this.opts.clusterId) {
          throw new ShoalError("CERT_INVALID", "the renewed certificate names another node or cluster");
        }
        await this.opts.onRenewed({ certPem, privateKey, role: info.role });
        this.lastRenewalMs = Date.now();
        this.log.info({ role: info.role, notAfter: info.notAfter.toISOString() }, "certificate renewed");
        // Reconnect with the new identity.
        this.closeChannel();
        this.stream?.cancel();
        this.scheduleRenewal();
        return;
      } catch (err) {
        lastErr = err;
        if (isRemoval(err)) {
          this.stopped = true;
          this.opts.onRemoved();
          throw err;
        }
        const hint = leaderHintOf(err);
        if (hint === undefined) break;
        addr = hint;
      }
    }
    throw lastErr instanceof Error ? lastErr : new ShoalError("UNAVAILABLE", "certificate renewal did not reach the leader");
  }
}

// Certificate renewal: at a random 50–80 % of the certificate's lifetime, or at once when the store
// says the node's role or zone changed; then the session reconnects with the new identity.
import * as grpc from "@grpc/grpc-js";
import type { KeyObject } from "node:crypto";
import type { Logger } from "pino";
import { ShoalError, isShoalError } from "../base/errors.js";
import type { Clock, Timer } from "../base/clock.js";
import type { Random } from "../base/random.js";
import { createNodeKeyAndCsr, DEFAULT_ZONE, parseNodeCertificate, pickRenewalTime, type NodeRole } from "../ca/index.js";
import { CAClient, type RenewNodeCertificateResponse } from "../proto/shoal/v1/ca.js";
import { CertificateStatus, NodeRole as ProtoNodeRole, type Node } from "../proto/shoal/v1/objects.js";
import { unaryCall } from "../transport/client.js";
import { leaderHintOf } from "../transport/leader.js";
import { CALL_DEADLINE_MS, type AgentIdentity, type DispatcherSession } from "./session.js";

/**
 * Scheduled renewals are at least this far apart, so a node whose clock runs ahead (and thus always
 * sees its new certificate past 80 %) does not renew in a tight loop.
 */
export const MIN_SCHEDULED_RENEWAL_INTERVAL_MS = 60_000;
/** Timers cannot wait longer than this; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const RETRY_AFTER_FAILURE_MS = 10_000;
const ZONE_LABEL = "zone";
/** A renewal the leader asks for starts within this long (spreads a rotation's renewals). */
export const RENEW_MARK_SPREAD_MS = 1_000;

export interface RenewedCertificate {
  certPem: string;
  privateKey: KeyObject;
  role: NodeRole;
}

export interface RenewalOptions {
  nodeId: string;
  clusterId: string;
  identity: () => AgentIdentity;
  session: DispatcherSession;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** Persist the new certificate and key and switch to them; the session reconnects afterwards. */
  onRenewed: (renewed: RenewedCertificate) => Promise<void>;
  onRemoved: () => void;
}

export class CertificateRenewal {
  private timer: Timer | undefined;
  private markTimer: Timer | undefined;
  private renewing: Promise<void> | undefined;
  private lastRenewalMs: number | undefined;
  private stopped = true;

  constructor(private readonly opts: RenewalOptions) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.markTimer?.cancel();
    await this.settled();
  }

  /** Settles when the renewal in flight (if any) is done. */
  settled(): Promise<void> {
    return this.renewing?.catch(() => undefined) ?? Promise.resolve();
  }

  /**
   * Renews at once when the store's role or zone for this node differs from the certificate's, or
   * when the leader marked the certificate for renewal (a root CA rotation).
   */
  checkNode(node: Node): void {
    if (node.certificate?.status === CertificateStatus.CERTIFICATE_STATUS_RENEW) {
      // Once per mark: later pushes of the same node (heartbeats) neither postpone nor repeat it.
      if (this.markTimer !== undefined || this.renewing !== undefined || this.stopped) return;
      // Spread over a short window so that a rotation does not make every node renew in the same instant.
      const delayMs = Math.floor(this.opts.random.float() * RENEW_MARK_SPREAD_MS);
      this.opts.logger.info({ delayMs }, "the leader asked for a new certificate (root CA rotation): renewing");
      this.markTimer = this.opts.clock.setTimeout(() => {
        this.markTimer = undefined;
        void this.renewNow().catch((err) => this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "certificate renewal failed"));
      }, delayMs);
      return;
    }
    const cert = parseNodeCertificate(this.opts.identity().certPem);
    const wantRole: NodeRole = node.spec?.desiredRole === ProtoNodeRole.NODE_ROLE_MANAGER ? "swarm-manager" : "swarm-worker";
    const wantZone = node.spec?.labels[ZONE_LABEL] || DEFAULT_ZONE;
    if (wantRole !== cert.role || wantZone !== cert.zone) {
      this.opts.logger.info({ from: cert.role, to: wantRole, zoneChanged: wantZone !== cert.zone }, "role or zone changed in the store: renewing the certificate now");
      void this.renewNow().catch((err) => this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "certificate renewal failed"));
    }
  }

  private schedule(): void {
    this.timer?.cancel();
    if (this.stopped) return;
    const { clock } = this.opts;
    const cert = parseNodeCertificate(this.opts.identity().certPem);
    const at = pickRenewalTime({ notBefore: cert.notBefore, notAfter: cert.notAfter, random: this.opts.random });
    const floorMs = this.lastRenewalMs === undefined ? 0 : this.lastRenewalMs + MIN_SCHEDULED_RENEWAL_INTERVAL_MS - clock.nowMs();
    const arm = (): void => {
      const waitMs = Math.max(at.getTime() - clock.nowMs(), floorMs);
      if (waitMs > MAX_TIMER_MS) {
        this.timer = clock.setTimeout(arm, MAX_TIMER_MS);
        return;
      }
      this.timer = clock.setTimeout(() => {
        void this.renewNow().catch((err) => {
          this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "scheduled certificate renewal failed; retrying in 10 s");
          this.timer = clock.setTimeout(() => this.schedule(), RETRY_AFTER_FAILURE_MS);
        });
      }, Math.max(0, waitMs));
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
    const { session } = this.opts;
    const { privateKey, csrPem } = await createNodeKeyAndCsr();
    let lastErr: unknown;
    let addr = session.currentAddr ?? session.nextAddr();
    for (let hop = 0; hop < 4 && !this.stopped; hop++) {
      const ca = session.openChannel(addr).client(CAClient);
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
        this.lastRenewalMs = this.opts.clock.nowMs();
        this.opts.logger.info({ role: info.role, notAfter: info.notAfter.toISOString() }, "certificate renewed");
        session.reconnect();
        this.schedule();
        return;
      } catch (err) {
        lastErr = err;
        if (isShoalError(err, "CERT_REVOKED")) {
          this.stopped = true;
          session.markStopped();
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

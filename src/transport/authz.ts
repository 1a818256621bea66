// Per-RPC authorization: every call's method path is looked up in a policy table (unknown methods are
// denied), the client certificate is verified through the injected PeerVerifier, its role checked
// against the policy, the revocation list consulted on every call, and open calls are tracked per
// peer so that a revocation ends them at once.
import * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../base/errors.js";
import type { Clock } from "../base/clock.js";
import { BlobsService } from "../proto/shoal/v1/blobs.js";
import { CAService } from "../proto/shoal/v1/ca.js";
import { ControlService } from "../proto/shoal/v1/control.js";
import { DispatcherService } from "../proto/shoal/v1/dispatcher.js";
import { RaftMembershipService, RaftService } from "../proto/shoal/v1/raft.js";
import { toGrpcError } from "./errors.js";
import { certificateFingerprint, type NodeRole, type PeerIdentity, type PeerVerifier } from "./identity.js";
import type { RevocationChange, RevocationState } from "./revocation.js";

/** "bootstrap": served without a client certificate (the CA's join path). */
export type MethodPolicy = { roles: readonly NodeRole[] } | "bootstrap";
export type MethodPolicies = ReadonlyMap<string, MethodPolicy>;

const MANAGERS: MethodPolicy = { roles: ["swarm-manager"] };
const ANY_NODE: MethodPolicy = { roles: ["swarm-manager", "swarm-worker"] };

function pathsOf(service: Record<string, { path: string }>): string[] {
  return Object.values(service).map((m) => m.path);
}

/** DESIGN.md §3 rule 2 as a table. LocalNode is absent on purpose: it is served on the unix socket only. */
export function defaultMethodPolicies(): Map<string, MethodPolicy> {
  const policies = new Map<string, MethodPolicy>();
  for (const p of pathsOf(RaftService)) policies.set(p, MANAGERS);
  for (const p of pathsOf(RaftMembershipService)) policies.set(p, MANAGERS);
  for (const p of pathsOf(ControlService)) policies.set(p, MANAGERS);
  for (const p of pathsOf(DispatcherService)) policies.set(p, ANY_NODE);
  // P2P pieces (rule 9): any node role may fetch; zone and grant are the peer service's own checks.
  for (const p of pathsOf(BlobsService)) policies.set(p, ANY_NODE);
  policies.set(CAService.getRootCaCertificate.path, "bootstrap");
  policies.set(CAService.issueNodeCertificate.path, "bootstrap");
  policies.set(CAService.nodeCertificateStatus.path, "bootstrap");
  // An expired manager certificate cannot pass TLS: it travels in the request with the manager token.
  policies.set(CAService.renewExpiredManagerCertificate.path, "bootstrap");
  policies.set(CAService.renewNodeCertificate.path, ANY_NODE);
  return policies;
}

export interface AuthorizerOptions {
  clusterId: string;
  verifier: PeerVerifier;
  revocation: RevocationState;
  policies: MethodPolicies;
  clock: Clock;
  /** Bound on cached verifications (one per distinct certificate). */
  maxCachedCertificates?: number;
  /**
   * Runs on every certificate-authenticated call after the certificate checks, with the method path:
   * the layer that owns the cluster state judges the caller as it is now (a manager certificate
   * outlives a demotion by up to 90 days). Throws a ShoalError to refuse; must be cheap (no I/O).
   */
  accessCheck?: CurrentAccessCheck;
}

export type CurrentAccessCheck = (identity: PeerIdentity, path: string) => void;

interface CachedIdentity {
  identity: PeerIdentity;
  revocationVersion: number;
}

interface OpenCall {
  call: grpc.ServerInterceptingCallInterface;
  identity: PeerIdentity;
}

/**
 * Holds the verification cache, the identities of calls in flight and the open-call registry for one
 * server. `interceptor` goes on every listener of that server.
 */
export class Authorizer {
  readonly interceptor: grpc.ServerInterceptor;
  private readonly cache = new Map<string, CachedIdentity>();
  private readonly identityByMetadata = new WeakMap<grpc.Metadata, PeerIdentity>();
  private readonly openCalls = new Set<OpenCall>();
  private readonly unsubscribe: () => void;
  private readonly maxCachedCertificates: number;

  constructor(private readonly opts: AuthorizerOptions) {
    this.maxCachedCertificates = opts.maxCachedCertificates ?? 10_000;
    this.interceptor = (methodDescriptor, call) => this.intercept(methodDescriptor.path, call);
    this.unsubscribe = opts.revocation.subscribe((change) => this.endRevokedCalls(change));
  }

  /**
   * The verified identity of the peer behind a handler's call. The interceptor records it against the
   * exact Metadata object it hands on, which a client cannot forge; for a bootstrap call this throws.
   */
  peerOf(call: { metadata: grpc.Metadata }): PeerIdentity {
    const identity = this.identityByMetadata.get(call.metadata);
    if (!identity) throw new ShoalError("UNAUTHENTICATED", "this call carries no verified client certificate");
    return identity;
  }

  /** Number of authenticated calls in flight (streams included). */
  get openCallCount(): number {
    return this.openCalls.size;
  }

  close(): void {
    this.unsubscribe();
    this.cache.clear();
  }

  /** Verifies a DER certificate for `policy`, throwing ShoalError; exposed for tests and the benchmark. */
  authorize(certDer: Buffer | undefined, policy: Exclude<MethodPolicy, "bootstrap">): PeerIdentity {
    if (!certDer || certDer.length === 0) {
      // grpc-js shows the peer certificate only when OpenSSL verified it against our root (chain and
      // dates), so "none" covers missing, expired, not-yet-valid and foreign-CA certificates alike.
      throw new ShoalError(
        "UNAUTHENTICATED",
        "this call needs a valid client certificate of this cluster (none was presented, or it is expired or not issued by this cluster's root CA): join the cluster or renew the certificate",
      );
    }
    const identity = this.verified(certDer);
    if (identity.clusterId !== this.opts.clusterId) {
      throw new ShoalError("CERT_WRONG_CLUSTER", "the client certificate belongs to another cluster");
    }
    if (this.opts.revocation.isRevoked(identity.nodeId, identity.serial)) {
      throw new ShoalError("CERT_REVOKED", `node ${identity.nodeId} has been removed from the cluster; join again with a token`);
    }
    if (!policy.roles.includes(identity.role)) {
      throw new ShoalError("CERT_WRONG_ROLE", `this call needs role ${policy.roles.join(" or ")}, the client is a ${identity.role}`);
    }
    return identity;
  }

  private verified(certDer: Buffer): PeerIdentity {
    const key = certificateFingerprint(certDer);
    const cached = this.cache.get(key);
    const nowMs = this.opts.clock.nowMs();
    if (cached && cached.revocationVersion === this.opts.revocation.version && nowMs < cached.identity.notAfter.getTime()) {
      return cached.identity;
    }
    if (cached) this.cache.delete(key);
    const identity = this.opts.verifier(certDer);
    // The verifier checked the dates against its own clock; check ours too so a cached entry never outlives the cert.
    if (nowMs >= identity.notAfter.getTime()) throw new ShoalError("CERT_EXPIRED", "the client certificate has expired: renew it or join again");
    if (this.cache.size >= this.maxCachedCertificates) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, { identity, revocationVersion: this.opts.revocation.version });
    return identity;
  }

  private intercept(path: string, call: grpc.ServerInterceptingCallInterface): grpc.ServerInterceptingCall {
    let open: OpenCall | undefined;
    const forget = (): void => {
      if (open) this.openCalls.delete(open);
      open = undefined;
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            const policy = this.opts.policies.get(path);
            if (policy === undefined) {
              refuse(call, new ShoalError("PERMISSION_DENIED", `method ${path} is not served over TLS`));
              return;
            }
            if (policy === "bootstrap") {
              mdNext(metadata);
              return;
            }
            let identity: PeerIdentity;
            try {
              identity = this.authorize(call.getAuthContext()?.sslPeerCertificate?.raw, policy);
              this.opts.accessCheck?.(identity, path);
            } catch (err) {
              refuse(call, err);
              return;
            }
            open = { call, identity };
            this.openCalls.add(open);
            this.identityByMetadata.set(metadata, identity);
            mdNext(metadata);
          },
          onCancel: forget,
        });
      },
      sendStatus: (status, next) => {
        forget();
        next(status);
      },
    });
  }

  private endRevokedCalls(change: RevocationChange): void {
    if (change.addedNodeIds.length === 0 && change.addedSerials.length === 0) return;
    for (const open of [...this.openCalls]) {
      if (!this.opts.revocation.isRevoked(open.identity.nodeId, open.identity.serial)) continue;
      this.openCalls.delete(open);
      refuse(open.call, new ShoalError("CERT_REVOKED", `node ${open.identity.nodeId} has been removed from the cluster; join again with a token`));
    }
  }
}

function refuse(call: grpc.ServerInterceptingCallInterface, err: unknown): void {
  const e = toGrpcError(err);
  call.sendStatus({ code: e.code ?? grpc.status.INTERNAL, details: e.details ?? "refused", metadata: e.metadata ?? new grpc.Metadata() });
}

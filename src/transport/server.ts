// The TLS gRPC server of a node. Every listener serves the certless CA bootstrap RPCs and the
// certificate-authenticated RPCs through one authorization interceptor.
//
// Two kinds of listener, because OpenSSL can refuse a revoked certificate at the handshake only when
// it is told to reject unverified peers, and that would lock out certless joiners:
//  - "open" (the advertised port agents and joiners dial): TLS requests a client certificate but
//    does not require one ("verify if given", as Swarm does), so a failed verification does not end
//    the handshake. grpc-js 1.14.7 hands a call the peer certificate only when OpenSSL verified it
//    (socket.authorized), so a foreign-CA, expired or missing certificate reaches the interceptor
//    as "no certificate" (UNAUTHENTICATED); the interceptor then runs the PeerVerifier (chain, dates,
//    cluster) again and checks role and revocation on every call. No CRL is loaded here: it would
//    turn a revoked certificate into "no certificate" (UNAUTHENTICATED) instead of PERMISSION_DENIED,
//    and the revocation list already refuses it, by node ID as well as serial.
//  - "peer" (optional, e.g. raft/control between managers): TLS requires a certificate that chains to
//    the root and is not on the CRL, so a revoked or foreign certificate fails the handshake itself;
//    the CRL is hot-swapped with setCrl. The interceptor still runs, because a CRL only affects new
//    handshakes and carries serials, not node IDs.
// A `tls` secureConnection hook on the open listener was rejected: grpc-js owns that http2 server and
// exposes no hook, so it would mean patching its internals.
import * as grpc from "@grpc/grpc-js";
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { SecureContextOptions } from "node:tls";
import { ShoalError } from "../base/errors.js";
import { systemClock, type Clock } from "../base/clock.js";
import { Authorizer, defaultMethodPolicies, type CurrentAccessCheck, type MethodPolicies } from "./authz.js";
import type { PeerIdentity, PeerVerifier } from "./identity.js";
import type { RevocationState } from "./revocation.js";

export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/**
 * Every TLS peer of a Shoal node is a Shoal node, so nothing needs TLS 1.2 or older: 1.3 alone
 * leaves only AEAD suites and forward secrecy, with no CBC or downgrade to negotiate. Servers and
 * clients both set it, in the secure context itself (a context swapped in later keeps it).
 */
export const TLS_MIN_VERSION = "TLSv1.3" as const;
/**
 * grpc-js keeps channelz statistics (counters and a new Date per call and per message) unless told
 * not to; nothing here serves channelz, and the bookkeeping showed in the leader's profile. For
 * servers and channels alike.
 */
export const GRPC_NO_CHANNELZ = { "grpc.enable_channelz": 0 } as const;
/** Upper bound for the configurable message size: above this a peer could pin too much memory per call. */
export const MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024;

export interface KeepaliveOptions {
  /** Ping an idle connection after this long. */
  timeMs: number;
  /** Drop the connection when a ping is not answered within this long. */
  timeoutMs: number;
}

export const DEFAULT_KEEPALIVE: KeepaliveOptions = { timeMs: 30_000, timeoutMs: 10_000 };

/**
 * A connection that has not finished its TLS handshake by then is closed (Node's default is 120 s),
 * so half-open or silent sockets cannot pile up: 2,000 of them held 150 MB on a manager.
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
/**
 * A connection with no call open for this long is closed (grpc-js sends GOAWAY; a client reconnects
 * for its next call). Every long-lived use (agent sessions, raft streams) keeps a call open, so this
 * mostly closes connections that authenticate nothing; a unary-only peer pays one new handshake.
 */
export const DEFAULT_IDLE_CONNECTION_MS = 5_000;

export interface NodeIdentityPem {
  certPem: string;
  keyPem: string;
}

export interface SecureServerOptions {
  clusterId: string;
  /** Root CA bundle (PEM) that client certificates must chain to. */
  rootCaPem: string;
  identity: NodeIdentityPem;
  verifier: PeerVerifier;
  revocation: RevocationState;
  policies?: MethodPolicies;
  /** CRL (PEM, "X509 CRL") for "peer" listeners; may be set later with setCrl. */
  crlPem?: string;
  maxReceiveMessageBytes?: number;
  maxSendMessageBytes?: number;
  keepalive?: KeepaliveOptions;
  /** Concurrent calls per connection. */
  maxConcurrentStreams?: number;
  /** Close a connection whose TLS handshake is not done by then (DEFAULT_HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs?: number;
  /** Close a connection with no call open for this long (DEFAULT_IDLE_CONNECTION_MS). */
  idleConnectionMs?: number;
  clock?: Clock;
  /**
   * Runs on every certificate-authenticated call after the certificate checks, e.g. to refuse a
   * manager certificate whose node the store has since demoted (AuthorizerOptions.accessCheck).
   */
  accessCheck?: CurrentAccessCheck;
}

export type ListenerKind = "open" | "peer";

/**
 * ServerCredentials whose TLS context can be replaced at run time (identity renewal, new CRL).
 * grpc-js re-reads the context through its watcher and calls setSecureContext, which affects new
 * handshakes only. `_equals`/`updateSecureContextOptions` are grpc-js internals (TOOLCHAIN §3).
 */
class SwappableServerCredentials extends grpc.ServerCredentials {
  private context: SecureContextOptions;

  constructor(
    private readonly kind: ListenerKind,
    context: SecureContextOptions,
    private readonly interceptors: grpc.ServerInterceptor[],
    handshakeTimeoutMs: number,
  ) {
    // grpc-js passes these constructor options to http2.createSecureServer, i.e. to tls.Server.
    super(
      { requestCert: true, rejectUnauthorized: kind === "peer", minVersion: TLS_MIN_VERSION, handshakeTimeout: handshakeTimeoutMs },
      { ...context, minVersion: TLS_MIN_VERSION },
    );
    this.context = { ...context, minVersion: TLS_MIN_VERSION };
  }

  update(patch: Partial<SecureContextOptions>): void {
    this.context = { ...this.context, ...patch, minVersion: TLS_MIN_VERSION };
    // See the module header: the open listener refuses revoked peers through the revocation list.
    if (this.kind === "open") delete this.context.crl;
    this.updateSecureContextOptions(this.context);
  }

  override _getInterceptors(): grpc.ServerInterceptor[] {
    return this.interceptors;
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

function boundedMs(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 100 || v > 3_600_000) {
    throw new ShoalError("INVALID_ARGUMENT", `${name} must be an integer number of milliseconds between 100 and 3600000, got ${v}`);
  }
  return v;
}

function boundedBytes(value: number | undefined, name: string): number {
  const v = value ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(v) || v < 1024 || v > MAX_MESSAGE_BYTES_LIMIT) {
    throw new ShoalError("INVALID_ARGUMENT", `${name} must be an integer between 1024 and ${MAX_MESSAGE_BYTES_LIMIT}, got ${v}`);
  }
  return v;
}

/** Checks that the key belongs to the certificate, so a bad renewal never reaches the TLS context. */
export function checkIdentityPem(identity: NodeIdentityPem): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(identity.certPem);
  } catch (err) {
    throw new ShoalError("PEM_INVALID", "the node certificate is not valid PEM", { cause: err });
  }
  let ok = false;
  try {
    ok = cert.checkPrivateKey(createPrivateKey(identity.keyPem));
  } catch (err) {
    throw new ShoalError("PEM_INVALID", "the node key is not a valid PEM private key", { cause: err });
  }
  if (!ok) throw new ShoalError("PEM_INVALID", "the node key does not match the node certificate");
}

function checkCrlPem(crlPem: string): void {
  if (!crlPem.includes("-----BEGIN X509 CRL-----")) {
    throw new ShoalError("PEM_INVALID", "the CRL must be PEM with the label 'X509 CRL'");
  }
}

export class SecureServer {
  readonly grpcServer: grpc.Server;
  readonly authorizer: Authorizer;
  private readonly credentials: SwappableServerCredentials[] = [];
  private identity: NodeIdentityPem;
  private crlPem: string | undefined;
  private readonly handshakeTimeoutMs: number;

  constructor(private opts: SecureServerOptions) {
    checkIdentityPem(opts.identity);
    if (opts.crlPem !== undefined) checkCrlPem(opts.crlPem);
    this.identity = opts.identity;
    this.crlPem = opts.crlPem;
    const keepalive = opts.keepalive ?? DEFAULT_KEEPALIVE;
    this.handshakeTimeoutMs = boundedMs(opts.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS, "handshakeTimeoutMs");
    this.grpcServer = new grpc.Server({
      "grpc.max_receive_message_length": boundedBytes(opts.maxReceiveMessageBytes, "maxReceiveMessageBytes"),
      "grpc.max_send_message_length": boundedBytes(opts.maxSendMessageBytes, "maxSendMessageBytes"),
      "grpc.keepalive_time_ms": keepalive.timeMs,
      "grpc.keepalive_timeout_ms": keepalive.timeoutMs,
      "grpc.max_concurrent_streams": opts.maxConcurrentStreams ?? 1000,
      "grpc.max_connection_idle_ms": boundedMs(opts.idleConnectionMs, DEFAULT_IDLE_CONNECTION_MS, "idleConnectionMs"),
      ...GRPC_NO_CHANNELZ,
    });
    this.authorizer = new Authorizer({
      clusterId: opts.clusterId,
      verifier: opts.verifier,
      revocation: opts.revocation,
      policies: opts.policies ?? defaultMethodPolicies(),
      clock: opts.clock ?? systemClock,
      accessCheck: opts.accessCheck,
    });
  }

  addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    this.grpcServer.addService(service, implementation);
  }

  /** Binds one listener; returns the bound port (pass port 0 to pick one). */
  listen(address: string, kind: ListenerKind = "open"): Promise<number> {
    const context: SecureContextOptions = {
      ca: this.opts.rootCaPem,
      cert: this.identity.certPem,
      key: this.identity.keyPem,
      ...(kind === "peer" && this.crlPem !== undefined ? { crl: this.crlPem } : {}),
    };
    const creds = new SwappableServerCredentials(kind, context, [this.authorizer.interceptor], this.handshakeTimeoutMs);
    this.credentials.push(creds);
    return new Promise((resolve, reject) => {
      this.grpcServer.bindAsync(address, creds, (err, port) => {
        if (err) reject(new ShoalError("UNAVAILABLE", `cannot listen on ${address}: ${err.message}`, { cause: err }));
        else resolve(port);
      });
    });
  }

  /** Swaps the node certificate (after renewal) for new handshakes on every listener. */
  updateIdentity(certPem: string, keyPem: string): void {
    checkIdentityPem({ certPem, keyPem });
    this.identity = { certPem, keyPem };
    for (const c of this.credentials) c.update({ cert: certPem, key: keyPem });
  }

  /** Replaces the roots client certificates must chain to (a root CA rotation), for new handshakes. */
  updateTrust(rootCaPem: string): void {
    this.opts = { ...this.opts, rootCaPem };
    for (const c of this.credentials) c.update({ ca: rootCaPem });
  }

  /**
   * Installs a new CRL (signed by the root CA) on every "peer" listener; new handshakes with a listed
   * serial then fail. Keep it fresh: once the CRL's nextUpdate passes, OpenSSL refuses every client
   * on those listeners (CRL has expired).
   */
  setCrl(crlPem: string): void {
    checkCrlPem(crlPem);
    this.crlPem = crlPem;
    for (const c of this.credentials) c.update({ crl: crlPem });
  }

  peerOf(call: { metadata: grpc.Metadata }): PeerIdentity {
    return this.authorizer.peerOf(call);
  }

  /** Stops accepting calls and waits up to `graceMs` for calls in flight, then cuts the rest. */
  shutdown(graceMs = 2000): Promise<void> {
    this.authorizer.close();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.grpcServer.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.grpcServer.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

export function createSecureServer(opts: SecureServerOptions): SecureServer {
  return new SecureServer(opts);
}

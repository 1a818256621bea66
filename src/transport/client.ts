// Client side of Shoal's TLS: channels pinned to the cluster's root CA that also check the server's
// role and cluster, and the join-time fetch of the root CA that trusts nothing but the token digest.
import * as grpc from "@grpc/grpc-js";
import { timingSafeEqual } from "node:crypto";
import { createSecureContext, type PeerCertificate } from "node:tls";
import { ShoalError } from "../base/errors.js";
import { caDigestOf } from "../ca/index.js";
import { CAClient, type GetRootCACertificateResponse } from "../proto/shoal/v1/ca.js";
import { fromGrpcError } from "./errors.js";
import type { NodeRole } from "./identity.js";
import type { RevocationState } from "./revocation.js";
import { DEFAULT_KEEPALIVE, DEFAULT_MAX_MESSAGE_BYTES, GRPC_NO_CHANNELZ, MAX_MESSAGE_BYTES_LIMIT, TLS_MIN_VERSION, type KeepaliveOptions } from "./server.js";

/** Every node certificate carries its role as a DNS SAN, so the role name verifies for any node of it. */
export const MANAGER_TARGET_NAME = "swarm-manager";

/** A root CA bundle larger than this is not a root CA bundle. */
export const MAX_ROOT_CA_BYTES = 64 * 1024;

export interface SecureChannelOptions {
  rootCaPem: string;
  /** Omit both for a certless channel (CA bootstrap calls only). */
  certPem?: string;
  keyPem?: string;
  expectServerRole: NodeRole;
  clusterId: string;
  /** When given, a server whose certificate is on the list is refused. */
  revocation?: RevocationState;
  maxReceiveMessageBytes?: number;
  maxSendMessageBytes?: number;
  keepalive?: KeepaliveOptions;
  /**
   * No grpc-js retry buffer: a streaming write's callback then fires once the message went to the
   * connection, instead of as soon as it was copied into the buffer kept for transparent retries, so
   * a writer that waits for it sends whatever queued meanwhile as one message. Only for callers that
   * resend on failure themselves (raft), since transparent retries are gone.
   */
  noRetryBuffer?: boolean;
  /**
   * The HTTP/2 window this side opens for the server's data (grpc-js's default is 64 KiB). A bulk
   * download (the P2P peer client) needs more: with 64 KiB in flight a stream waits for a window
   * update every 64 KiB, and its speed is 64 KiB per round trip of the (busy) event loops.
   */
  flowControlWindowBytes?: number;
}

type ClientConstructor<C> = new (address: string, credentials: grpc.ChannelCredentials, options?: Partial<grpc.ClientOptions>) => C;

export interface SecureChannel {
  readonly address: string;
  readonly channel: grpc.Channel;
  /** A generated client (e.g. `ControlClient`) sharing this channel's one connection. */
  client<C>(ctor: ClientConstructor<C>): C;
  close(): void;
}

function one(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function messageBytes(value: number | undefined, name: string): number {
  const v = value ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(v) || v < 1024 || v > MAX_MESSAGE_BYTES_LIMIT) {
    throw new ShoalError("INVALID_ARGUMENT", `${name} must be an integer between 1024 and ${MAX_MESSAGE_BYTES_LIMIT}, got ${v}`);
  }
  return v;
}

/** The server-certificate check: chain is verified by TLS against rootCaPem; this adds O, OU and revocation. */
export function serverIdentityCheck(opts: Pick<SecureChannelOptions, "clusterId" | "expectServerRole" | "revocation">) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    const o = one(cert.subject?.O);
    const ou = one(cert.subject?.OU);
    const cn = one(cert.subject?.CN);
    if (o !== opts.clusterId) return new Error("the server's certificate belongs to another cluster");
    if (ou !== opts.expectServerRole) return new Error(`the server is not a ${opts.expectServerRole} (its certificate says ${ou ?? "no role"})`);
    if (opts.revocation && cn !== undefined && opts.revocation.isRevoked(cn, cert.serialNumber ?? "")) {
      return new Error(`the server ${cn} has been removed from the cluster`);
    }
    return undefined;
  };
}

function channelOptions(
  opts: { maxReceiveMessageBytes?: number; maxSendMessageBytes?: number; keepalive?: KeepaliveOptions; noRetryBuffer?: boolean; flowControlWindowBytes?: number },
  targetName: NodeRole = MANAGER_TARGET_NAME,
): grpc.ChannelOptions {
  const keepalive = opts.keepalive ?? DEFAULT_KEEPALIVE;
  return {
    ...(opts.noRetryBuffer === true ? { "grpc.per_rpc_retry_buffer_size": 0 } : {}),
    ...(opts.flowControlWindowBytes !== undefined ? { "grpc-node.flow_control_window": opts.flowControlWindowBytes } : {}),
    // Dialing an IP: TLS SNI must be a name, and the role name is one every certificate of that role has.
    "grpc.ssl_target_name_override": targetName,
    "grpc.max_receive_message_length": messageBytes(opts.maxReceiveMessageBytes, "maxReceiveMessageBytes"),
    "grpc.max_send_message_length": messageBytes(opts.maxSendMessageBytes, "maxSendMessageBytes"),
    "grpc.keepalive_time_ms": keepalive.timeMs,
    "grpc.keepalive_timeout_ms": keepalive.timeoutMs,
    ...GRPC_NO_CHANNELZ,
  };
}

/**
 * Channel credentials on a TLS 1.3-only context (grpc-js's createSsl takes no protocol version, so the
 * context is built here with the same roots, key and chain). `ca` omitted: nothing is verified, for
 * the one unverified root-CA fetch.
 */
function tlsCredentials(
  pem: { ca?: string; key?: string; cert?: string },
  verify: { checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined; rejectUnauthorized?: boolean },
): grpc.ChannelCredentials {
  const context = createSecureContext({ minVersion: TLS_MIN_VERSION, ...(pem.ca !== undefined ? { ca: pem.ca } : {}), key: pem.key, cert: pem.cert });
  return grpc.ChannelCredentials.createFromSecureContext(context, verify);
}

function wrapChannel(address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions): SecureChannel {
  const channel = new grpc.Channel(address, credentials, options);
  return {
    address,
    channel,
    client: <C>(ctor: ClientConstructor<C>): C => new ctor(address, credentials, { ...options, channelOverride: channel }),
    close: () => channel.close(),
  };
}

export function createSecureChannel(address: string, opts: SecureChannelOptions): SecureChannel {
  if ((opts.certPem === undefined) !== (opts.keyPem === undefined)) {
    throw new ShoalError("INVALID_ARGUMENT", "give both certPem and keyPem, or neither for a certless channel");
  }
  const credentials = tlsCredentials({ ca: opts.rootCaPem, key: opts.keyPem, cert: opts.certPem }, { checkServerIdentity: serverIdentityCheck(opts) });
  return wrapChannel(address, credentials, channelOptions(opts, opts.expectServerRole));
}


function digestsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Promisifies one callback-style unary call of a generated client. */
export function unaryCall<T>(invoke: (callback: (err: grpc.ServiceError | null, value?: T) => void) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    invoke((err, value) => {
      if (err) reject(fromGrpcError(err));
      else if (value === undefined) reject(new ShoalError("INTERNAL", "the server returned no response"));
      else resolve(value);
    });
  });
}

export interface FetchRootCaOptions {
  timeoutMs?: number;
}

/**
 * A certless channel pinned to a root CA, for a joiner that knows the CA (checked against its
 * token) but not yet the cluster ID: the server must chain to that CA and be a manager.
 */
export function createJoinChannel(address: string, rootCaPem: string, opts: { maxReceiveMessageBytes?: number } = {}): SecureChannel {
  const credentials = tlsCredentials(
    { ca: rootCaPem },
    {
      checkServerIdentity: (_host, cert) =>
        one(cert.subject?.OU) === MANAGER_TARGET_NAME ? undefined : new Error("the server is not a swarm-manager of this cluster"),
    },
  );
  return wrapChannel(address, credentials, channelOptions(opts));
}

async function getRootCa(ch: SecureChannel, timeoutMs: number): Promise<Buffer> {
  return Buffer.from((await getRootCaResponse(ch, timeoutMs)).certificate);
}

async function getRootCaResponse(ch: SecureChannel, timeoutMs: number): Promise<GetRootCACertificateResponse> {
  const client = ch.client(CAClient);
  const deadline = new Date(Date.now() + timeoutMs);
  return unaryCall<GetRootCACertificateResponse>((cb) => client.getRootCaCertificate({}, new grpc.Metadata(), { deadline }, cb));
}

/**
 * Fetches the root CA from a manager without trusting TLS (the joiner has no trust anchor yet) and
 * accepts it only if its digest equals the join token's. It then asks again over TLS pinned to that
 * CA, so a relay that serves the right CA but cannot present a certificate of the cluster is refused
 * here rather than at the next call. Callers then pin that CA for everything else.
 */
export async function fetchRootCA(address: string, expectedDigest: string, opts: FetchRootCaOptions = {}): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const credentials = tlsCredentials({}, { rejectUnauthorized: false });
  const unverified = wrapChannel(address, credentials, channelOptions({ maxReceiveMessageBytes: 1024 * 1024 }));
  let pem: Buffer;
  let previousDigests: string[];
  try {
    const response = await getRootCaResponse(unverified, timeoutMs);
    pem = Buffer.from(response.certificate);
    previousDigests = response.previousCaDigests;
  } finally {
    unverified.close();
  }
  if (pem.length === 0 || pem.length > MAX_ROOT_CA_BYTES || !pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new ShoalError("PEM_INVALID", `the manager sent no usable root CA (${pem.length} bytes); check the address`);
  }
  if (!digestsEqual(caDigestOf(pem), expectedDigest)) {
    // Unauthenticated, like the CA itself: it changes only the wording of the refusal.
    if (previousDigests.some((d) => digestsEqual(d, expectedDigest))) {
      throw new ShoalError("TOKEN_ROTATED", "this join token pins the root CA the cluster rotated away from (`shoal ca --rotate`); get the current one with `shoal join-token worker|manager`");
    }
    throw new ShoalError(
      "TOKEN_DIGEST_MISMATCH",
      "the manager's root CA does not match the join token: check the token and the manager address, or someone is intercepting the connection",
    );
  }
  const rootCaPem = pem.toString("utf8");
  const pinned = createJoinChannel(address, rootCaPem);
  try {
    const again = await getRootCa(pinned, timeoutMs);
    if (!again.equals(pem)) throw new ShoalError("CERT_UNTRUSTED", "the manager served a different root CA over the pinned connection");
  } catch (err) {
    if (err instanceof ShoalError && err.code === "CERT_UNTRUSTED") throw err;
    throw new ShoalError("CERT_UNTRUSTED", "the manager's TLS certificate is not a manager certificate of the token's root CA; check the address", { cause: err });
  } finally {
    pinned.close();
  }
  return rootCaPem;
}

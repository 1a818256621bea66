// Minimal etcd v3 KV client over grpc-js with mutual TLS (Put and Range only), with the messages encoded
// by hand so the benchmark needs no etcd npm package. Connections follow etcd's `benchmark` tool: a pool
// of channels, channel i dialling endpoint i mod members, and worker w always using channel w mod pool.
import * as grpc from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { randomBytes } from "node:crypto";
import { ShoalError } from "../../../src/base/errors.js";

const PUT_PATH = "/etcdserverpb.KV/Put";
const RANGE_PATH = "/etcdserverpb.KV/Range";

export interface EtcdKvClientOptions {
  /** Client URLs (`https://127.0.0.1:2379`); channel i dials endpoints[i % length]. */
  endpoints: string[];
  /** HTTP/2 connections to open. Unique channel options keep grpc-js from sharing one subchannel between them. */
  channels: number;
  /** Omit for plain-text endpoints. Omit certPem/keyPem to dial without a client certificate. */
  tls?: { caPem: string; certPem?: string; keyPem?: string };
  /** Per-call deadline, so a lost request fails instead of stalling a closed-loop worker. */
  callTimeoutMs?: number;
}

export interface KeyValue {
  key: Uint8Array;
  value: Uint8Array;
  modRevision: bigint;
}

// ---- wire encoding (etcd api/etcdserverpb/rpc.proto, mvccpb/kv.proto) ----------------------------

function toBytes(x: Uint8Array | string): Uint8Array {
  return typeof x === "string" ? Buffer.from(x, "utf8") : x;
}

/** PutRequest { bytes key = 1; bytes value = 2; } */
export function encodePutRequest(key: Uint8Array, value: Uint8Array): Buffer {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).bytes(key);
  w.tag(2, WireType.LengthDelimited).bytes(value);
  const out = w.finish();
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

/** RangeRequest { bytes key = 1; } (a single-key read, linearizable by default). */
export function encodeRangeRequest(key: Uint8Array): Buffer {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).bytes(key);
  const out = w.finish();
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

function asBigInt(v: bigint | string): bigint {
  return typeof v === "bigint" ? v : BigInt(v);
}

/** ResponseHeader { uint64 cluster_id = 1; uint64 member_id = 2; int64 revision = 3; uint64 raft_term = 4; } → revision */
function decodeHeaderRevision(bytes: Uint8Array): bigint {
  const r = new BinaryReader(bytes);
  let revision = 0n;
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 3 && wireType === WireType.Varint) revision = asBigInt(r.int64());
    else r.skip(wireType, field);
  }
  return revision;
}

/** PutResponse { ResponseHeader header = 1; KeyValue prev_kv = 2; } → header.revision */
export function decodePutResponse(bytes: Uint8Array): { revision: bigint } {
  const r = new BinaryReader(bytes);
  let revision = 0n;
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) revision = decodeHeaderRevision(r.bytes());
    else r.skip(wireType, field);
  }
  return { revision };
}

/** KeyValue { bytes key = 1; int64 create_revision = 2; int64 mod_revision = 3; int64 version = 4; bytes value = 5; int64 lease = 6; } */
function decodeKeyValue(bytes: Uint8Array): KeyValue {
  const r = new BinaryReader(bytes);
  const kv: KeyValue = { key: new Uint8Array(0), value: new Uint8Array(0), modRevision: 0n };
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) kv.key = r.bytes();
    else if (field === 3 && wireType === WireType.Varint) kv.modRevision = asBigInt(r.int64());
    else if (field === 5 && wireType === WireType.LengthDelimited) kv.value = r.bytes();
    else r.skip(wireType, field);
  }
  return kv;
}

/** RangeResponse { ResponseHeader header = 1; repeated KeyValue kvs = 2; bool more = 3; int64 count = 4; } */
export function decodeRangeResponse(bytes: Uint8Array): { revision: bigint; kvs: KeyValue[] } {
  const r = new BinaryReader(bytes);
  let revision = 0n;
  const kvs: KeyValue[] = [];
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) revision = decodeHeaderRevision(r.bytes());
    else if (field === 2 && wireType === WireType.LengthDelimited) kvs.push(decodeKeyValue(r.bytes()));
    else r.skip(wireType, field);
  }
  return { revision, kvs };
}

// ---- the client ----------------------------------------------------------------------------------

function targetOf(endpoint: string): string {
  const match = /^(?:https?:\/\/)?([^/]+)\/?$/.exec(endpoint);
  if (match === null) throw new ShoalError("INVALID_ARGUMENT", `endpoint '${endpoint}' is not of the form https://host:port`);
  return match[1]!;
}

const identity = (b: Buffer): Buffer => b;

export class EtcdKvClient {
  private readonly clients: grpc.Client[];
  private readonly callTimeoutMs: number;
  private nextChannel = 0;

  constructor(options: EtcdKvClientOptions) {
    const { endpoints, channels } = options;
    if (endpoints.length === 0) throw new ShoalError("INVALID_ARGUMENT", "at least one etcd endpoint is needed");
    if (!Number.isInteger(channels) || channels < 1 || channels > 1024) {
      throw new ShoalError("INVALID_ARGUMENT", `channels must be an integer in 1..1024, got ${channels}`);
    }
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
    const tls = options.tls;
    const creds =
      tls === undefined
        ? grpc.credentials.createInsecure()
        : grpc.credentials.createSsl(
            Buffer.from(tls.caPem),
            tls.keyPem !== undefined ? Buffer.from(tls.keyPem) : null,
            tls.certPem !== undefined ? Buffer.from(tls.certPem) : null,
          );
    const clientTag = randomBytes(4).toString("hex");
    this.clients = Array.from({ length: channels }, (_, i) => {
      const options: grpc.ChannelOptions = {
        // Member certificates carry DNS:localhost; naming it avoids Node's TLS-servername-is-an-IP warning.
        ...(tls !== undefined ? { "grpc.ssl_target_name_override": "localhost" } : {}),
        // Both stop grpc-js from folding channels with equal options onto one shared HTTP/2 connection.
        "grpc.use_local_subchannel_pool": 1,
        // No channelz bookkeeping in either benchmark client (cluster-write.ts's Shoal client neither).
        "grpc.enable_channelz": 0,
        "grpc.primary_user_agent": `shoal-etcd-bench/${clientTag}-${i}`,
        "grpc.max_receive_message_length": 16 * 1024 * 1024,
      };
      return new grpc.Client(targetOf(endpoints[i % endpoints.length]!), creds, options);
    });
  }

  get channelCount(): number {
    return this.clients.length;
  }

  private channelFor(worker: number | undefined): grpc.Client {
    const index = worker !== undefined ? worker % this.clients.length : this.nextChannel++ % this.clients.length;
    return this.clients[index]!;
  }

  private unary<T>(path: string, request: Buffer, decode: (b: Buffer) => T, worker: number | undefined): Promise<T> {
    const client = this.channelFor(worker);
    return new Promise<T>((resolve, reject) => {
      client.makeUnaryRequest<Buffer, T>(
        path,
        identity,
        decode,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + this.callTimeoutMs },
        (err, response) => {
          if (err !== null) reject(err);
          else if (response === undefined) reject(new ShoalError("INTERNAL", `${path} returned no response`));
          else resolve(response);
        },
      );
    });
  }

  /** Writes one key; resolves once etcd has committed it (quorum fsync) and returns the new revision. */
  put(key: Uint8Array | string, value: Uint8Array | string, worker?: number): Promise<{ revision: bigint }> {
    return this.unary(PUT_PATH, encodePutRequest(toBytes(key), toBytes(value)), decodePutResponse, worker);
  }

  /** Linearizable read of one key. */
  range(key: Uint8Array | string, worker?: number): Promise<{ revision: bigint; kvs: KeyValue[] }> {
    return this.unary(RANGE_PATH, encodeRangeRequest(toBytes(key)), decodeRangeResponse, worker);
  }

  /** Connects every channel now, so the first measured calls do not pay for TLS handshakes. */
  async connect(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await Promise.all(
      this.clients.map(
        (c) => new Promise<void>((resolve, reject) => c.waitForReady(deadline, (err) => (err !== undefined && err !== null ? reject(err) : resolve()))),
      ),
    );
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

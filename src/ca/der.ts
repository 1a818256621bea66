// Just enough DER to build a node certificate's TBSCertificate and to read CSRs and certificate
// parts. Issuance is a hot path (see scripts/bench/ca-sign.ts): building the DER here and signing with
// node:crypto is about ten times faster than going through @peculiar/x509 and webcrypto.
import { ShoalError, type ShoalErrorCode } from "../base/errors.js";

export const TAG_BOOLEAN = 0x01;
export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_OID = 0x06;
export const TAG_UTF8_STRING = 0x0c;
export const TAG_UTC_TIME = 0x17;
export const TAG_GENERALIZED_TIME = 0x18;
export const TAG_SEQUENCE = 0x30;
export const TAG_SET = 0x31;

// ---- writing ----

function lengthBytes(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV with a single-byte tag; `tag` may carry class and constructed bits (e.g. 0xa0, 0x82). */
export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = content.length === 1 ? Buffer.from(content[0]!) : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

export const sequence = (...items: Uint8Array[]): Buffer => tlv(TAG_SEQUENCE, ...items);
export const set = (...items: Uint8Array[]): Buffer => tlv(TAG_SET, ...items);
export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG_OCTET_STRING, bytes);
export const utf8String = (text: string): Buffer => tlv(TAG_UTF8_STRING, Buffer.from(text, "utf8"));
export const booleanTrue = (): Buffer => tlv(TAG_BOOLEAN, Buffer.from([0xff]));
/** A BIT STRING whose content is whole bytes (no unused bits). */
export const bitString = (bytes: Uint8Array, unusedBits = 0): Buffer => tlv(TAG_BIT_STRING, Buffer.from([unusedBits]), bytes);

/** A non-negative INTEGER from big-endian magnitude bytes, minimally encoded as DER requires. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  let body = Buffer.from(magnitude.subarray(start));
  if (body.length === 0) body = Buffer.from([0]);
  if (body[0]! & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return tlv(TAG_INTEGER, body);
}

const oidCache = new Map<string, Buffer>();
export function oid(dotted: string): Buffer {
  const cached = oidCache.get(dotted);
  if (cached) return cached;
  const arcs = dotted.split(".").map((part) => Number(part));
  if (arcs.length < 2 || arcs.some((arc) => !Number.isSafeInteger(arc) || arc < 0)) throw new RangeError(`bad OID ${dotted}`);
  const bytes: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) chunk.unshift(0x80 | (rest & 0x7f));
    bytes.push(...chunk);
  }
  const encoded = tlv(TAG_OID, Buffer.from(bytes));
  oidCache.set(dotted, encoded);
  return encoded;
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC. */
export function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const year = date.getUTCFullYear();
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "");
  if (year >= 1950 && year < 2050) return tlv(TAG_UTC_TIME, Buffer.from(digits.slice(2) + "Z", "ascii"));
  return tlv(TAG_GENERALIZED_TIME, Buffer.from(digits + "Z", "ascii"));
}

// ---- reading ----

export interface DerNode {
  tag: number;
  /** Offset of the tag byte in the buffer. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset one past the last content byte. */
  end: number;
}

/** Reads one TLV at `offset`; throws `code` on anything truncated or not DER-shaped. */
export function readNode(buf: Uint8Array, offset: number, code: ShoalErrorCode, what: string): DerNode {
  const fail = (): never => {
    throw new ShoalError(code, `${what} is not valid DER`);
  };
  if (offset + 2 > buf.length) fail();
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) fail(); // multi-byte tags never occur in the structures we read
  let length = buf[offset + 1]!;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || contentStart + count > buf.length) fail();
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[contentStart + i]!;
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > buf.length) fail();
  return { tag, start: offset, contentStart, end };
}

/** The children of a constructed node, in order. */
export function childrenOf(buf: Uint8Array, node: DerNode, code: ShoalErrorCode, what: string): DerNode[] {
  const children: DerNode[] = [];
  for (let offset = node.contentStart; offset < node.end; ) {
    const child = readNode(buf, offset, code, what);
    if (child.end > node.end) throw new ShoalError(code, `${what} is not valid DER`);
    children.push(child);
    offset = child.end;
  }
  return children;
}

export const whole = (buf: Uint8Array, node: DerNode): Buffer => Buffer.from(buf.subarray(node.start, node.end));
export const content = (buf: Uint8Array, node: DerNode): Buffer => Buffer.from(buf.subarray(node.contentStart, node.end));

/** Dotted form of an OID node's content. */
export function decodeOid(bytes: Uint8Array): string {
  if (bytes.length === 0) return "";
  const arcs: number[] = [Math.floor(bytes[0]! / 40), bytes[0]! % 40];
  let value = 0;
  for (let i = 1; i < bytes.length; i++) {
    value = value * 128 + (bytes[i]! & 0x7f);
    if (!(bytes[i]! & 0x80)) {
      arcs.push(value);
      value = 0;
    }
  }
  return arcs.join(".");
}

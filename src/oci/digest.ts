// Content digests (`sha256:<64 hex>`): parsing, hashing, and the check that what arrived is what
// was asked for. Only sha256 is accepted: it is what registries and the OCI spec use by default,
// and accepting fewer algorithms leaves fewer ways to be handed a weak one.
import { createHash, type Hash } from "node:crypto";
import { ShoalError } from "../base/errors.js";

const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

/** Returns `digest` when it is `sha256:` and 64 lower-case hex digits; throws INVALID_ARGUMENT otherwise. */
export function parseDigest(digest: string): string {
  if (typeof digest !== "string" || !SHA256_DIGEST.test(digest)) {
    const shown = typeof digest === "string" ? digest.slice(0, 80) : typeof digest;
    throw new ShoalError("INVALID_ARGUMENT", `digest '${shown}' is not sha256:<64 lower-case hex digits>`);
  }
  return digest;
}

export function isDigest(value: unknown): value is string {
  return typeof value === "string" && SHA256_DIGEST.test(value);
}

/** The hex part of a digest (the file name in a content store). */
export function digestHex(digest: string): string {
  return parseDigest(digest).slice("sha256:".length);
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** A running sha256 over bytes as they arrive. */
export class DigestVerifier {
  private readonly hash: Hash = createHash("sha256");
  private bytes = 0;

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }

  get byteCount(): number {
    return this.bytes;
  }

  /** The digest of everything seen so far; the verifier must not be used after. */
  digest(): string {
    return `sha256:${this.hash.digest("hex")}`;
  }
}

/** Throws DIGEST_MISMATCH (saying what was fetched and from where) when `actual` is not `expected`. */
export function checkDigest(expected: string, actual: string, what: string): void {
  if (expected !== actual) {
    throw new ShoalError("DIGEST_MISMATCH", `${what}: expected ${expected}, the bytes that arrived hash to ${actual}`);
  }
}

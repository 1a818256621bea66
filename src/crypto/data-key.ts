// 32-byte symmetric keys (the DEK, and the KEK derived from an unlock key) held in libsodium's
// guarded memory: locked, read-only between uses, zeroed and released on dispose.
import sodium from "sodium-native";
import { ShoalError } from "../base/errors.js";

export const KEY_BYTES = 32;
/** Length of the key ID that sealed values carry so that rotation knows which key opens them. */
export const KEY_ID_BYTES = 4;

// The key ID is a keyed BLAKE2b of a fixed label, so it names the key without revealing its bytes.
const KEY_ID_LABEL = Buffer.from("shoal data key id v1", "utf8");

// sodium_free exists in sodium-native 5.1.0 but not in @types/sodium-native 2.3.9.
const sodiumFree = (sodium as unknown as { sodium_free?: (buf: Buffer) => void }).sodium_free;

export class DataKey {
  private material: sodium.SecureBuffer | undefined;
  /** KEY_ID_BYTES bytes that identify this key (not secret). */
  readonly id: Buffer;

  private constructor(material: sodium.SecureBuffer) {
    this.material = material;
    const digest = Buffer.alloc(sodium.crypto_generichash_BYTES_MIN);
    sodium.crypto_generichash(digest, KEY_ID_LABEL, material);
    this.id = Buffer.from(digest.subarray(0, KEY_ID_BYTES));
    // Read-only from here on: a stray write into the key crashes the process instead of corrupting it.
    sodium.sodium_mprotect_readonly(material);
  }

  /** A fresh key from the OS CSPRNG (libsodium's randombytes). */
  static generate(): DataKey {
    const material = sodium.sodium_malloc(KEY_BYTES);
    sodium.randombytes_buf(material);
    return new DataKey(material);
  }

  /** Copies `bytes` into secure memory; the caller should zero its own copy afterwards. */
  static fromBytes(bytes: Uint8Array): DataKey {
    if (bytes.byteLength !== KEY_BYTES) {
      throw new ShoalError("INVALID_ARGUMENT", `a data key must be exactly ${KEY_BYTES} bytes, got ${bytes.byteLength}`);
    }
    const material = sodium.sodium_malloc(KEY_BYTES);
    material.set(bytes);
    return new DataKey(material);
  }

  get disposed(): boolean {
    return this.material === undefined;
  }

  /** The id as lowercase hex, for logs and error messages. */
  get idHex(): string {
    return this.id.toString("hex");
  }

  /**
   * The key bytes in secure memory, for libsodium calls inside src/crypto and src/storage only.
   * Never copy, log or keep the result.
   */
  secureBytes(): Buffer {
    if (this.material === undefined) {
      throw new ShoalError("CRYPTO_FAILED", `data key ${this.idHex} was disposed and can no longer be used`);
    }
    return this.material;
  }

  /** An ordinary-heap copy for writing a key file. The caller must `sodium_memzero` it when done. */
  exportBytes(): Buffer {
    return Buffer.from(this.secureBytes());
  }

  /** Constant-time comparison of the key bytes. */
  equals(other: DataKey): boolean {
    return sodium.sodium_memcmp(this.secureBytes(), other.secureBytes());
  }

  /** Zeroes and releases the key. Idempotent; any later use throws CRYPTO_FAILED. */
  dispose(): void {
    const material = this.material;
    if (material === undefined) return;
    this.material = undefined;
    sodium.sodium_mprotect_readwrite(material);
    sodium.sodium_memzero(material);
    sodiumFree?.(material);
  }
}

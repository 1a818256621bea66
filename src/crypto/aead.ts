// Authenticated encryption with associated data: XChaCha20-Poly1305-IETF with a random 24-byte
// nonce. Wire format: [version 1 byte][nonce 24 bytes][ciphertext + 16-byte tag].
//
// Every failure to open (tampered byte, wrong associated data, wrong key, truncation, unknown
// version) throws ShoalError("CRYPTO_FAILED"); callers that know the context (the store, the
// key file) translate it into their own code (STORE_CORRUPT, UNLOCK_KEY_WRONG, ...).
import sodium from "sodium-native";
import { ShoalError } from "../base/errors.js";
import type { DataKey } from "./data-key.js";

export const SEALED_VERSION = 1;
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
const HEADER_BYTES = 1 + NONCE_BYTES;
/** Bytes a sealed value adds to its plaintext. */
export const SEAL_OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES;

// Nonces are public, so they may be drawn from the CSPRNG in bulk: one randombytes call per 128
// seals instead of one each (a native call costs about as much as sealing 256 bytes). Each pooled
// byte is handed out once.
const NONCE_POOL_NONCES = 128;
const noncePool = Buffer.alloc(NONCE_BYTES * NONCE_POOL_NONCES);
let noncePoolOffset = noncePool.length;

function takeNonce(into: Buffer): void {
  if (noncePoolOffset === noncePool.length) {
    sodium.randombytes_buf(noncePool);
    noncePoolOffset = 0;
  }
  noncePool.copy(into, 0, noncePoolOffset, noncePoolOffset + NONCE_BYTES);
  noncePoolOffset += NONCE_BYTES;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// The version byte is authenticated too, so a future format cannot be confused with this one.
function authenticatedData(version: number, associatedData: Uint8Array): Buffer {
  const ad = Buffer.allocUnsafe(1 + associatedData.byteLength);
  ad[0] = version;
  ad.set(associatedData, 1);
  return ad;
}

/** Seals `plaintext` under `key`, binding it to `associatedData` (which is not stored). */
export function seal(key: DataKey, plaintext: Uint8Array, associatedData: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(SEAL_OVERHEAD_BYTES + plaintext.byteLength);
  sealInto(out, key, plaintext, associatedData);
  return out;
}

/**
 * `seal` into a caller-provided buffer of exactly `SEAL_OVERHEAD_BYTES + plaintext.byteLength`
 * bytes, so a caller that frames the sealed value (the store's header) avoids a second copy.
 */
export function sealInto(out: Buffer, key: DataKey, plaintext: Uint8Array, associatedData: Uint8Array): void {
  const keyBytes = key.secureBytes();
  if (out.byteLength !== SEAL_OVERHEAD_BYTES + plaintext.byteLength) {
    throw new ShoalError("INVALID_ARGUMENT", `sealInto needs an output of ${SEAL_OVERHEAD_BYTES + plaintext.byteLength} bytes, got ${out.byteLength}`);
  }
  out[0] = SEALED_VERSION;
  const nonce = out.subarray(1, HEADER_BYTES);
  takeNonce(nonce);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
    out.subarray(HEADER_BYTES),
    asBuffer(plaintext),
    authenticatedData(SEALED_VERSION, associatedData),
    null,
    nonce,
    keyBytes,
  );
}

/** Opens a value made by `seal` with the same key and associated data, or throws CRYPTO_FAILED. */
export function open(key: DataKey, sealed: Uint8Array, associatedData: Uint8Array): Buffer {
  const keyBytes = key.secureBytes();
  if (sealed.byteLength < SEAL_OVERHEAD_BYTES) {
    throw new ShoalError("CRYPTO_FAILED", `sealed value is ${sealed.byteLength} bytes, shorter than the ${SEAL_OVERHEAD_BYTES}-byte minimum: it is truncated`);
  }
  const box = asBuffer(sealed);
  if (box[0] !== SEALED_VERSION) {
    throw new ShoalError("CRYPTO_FAILED", `sealed value has unknown format version ${box[0]} (this build reads version ${SEALED_VERSION})`);
  }
  const plaintext = Buffer.allocUnsafe(box.byteLength - SEAL_OVERHEAD_BYTES);
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
      plaintext,
      null,
      box.subarray(HEADER_BYTES),
      authenticatedData(SEALED_VERSION, associatedData),
      box.subarray(1, HEADER_BYTES),
      keyBytes,
    );
  } catch (cause) {
    throw new ShoalError("CRYPTO_FAILED", "sealed value failed authentication: wrong key, wrong associated data, or the bytes were altered", { cause });
  }
  return plaintext;
}

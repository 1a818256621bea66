// Unlock keys (the KEK of autolock, DESIGN.md §2): `SWMKEY-1-<base64 without padding of 32 random
// bytes>`. The 32 bytes are used directly as the key-encryption key. Errors never echo the input.
import sodium from "sodium-native";
import { ShoalError } from "../base/errors.js";
import { DataKey, KEY_BYTES } from "./data-key.js";

export const UNLOCK_KEY_PREFIX = "SWMKEY-1-";
/** 32 bytes in unpadded base64 is 43 characters. */
const ENCODED_KEY_CHARS = Math.ceil((KEY_BYTES * 8) / 6);
const BASE64_CHARS = /^[A-Za-z0-9+/]*$/;

/** A new unlock key from the OS CSPRNG. */
export function generateUnlockKey(): string {
  const bytes = Buffer.alloc(KEY_BYTES);
  sodium.randombytes_buf(bytes);
  const text = UNLOCK_KEY_PREFIX + bytes.toString("base64").replace(/=+$/, "");
  sodium.sodium_memzero(bytes);
  return text;
}

function malformed(what: string): ShoalError {
  return new ShoalError("UNLOCK_KEY_MALFORMED", `the unlock key is malformed: ${what}; pass the SWMKEY-1-... key printed by 'shoal unlock-key'`);
}

/**
 * The 32 key bytes of an unlock key. Surrounding whitespace (a trailing newline from stdin) is
 * ignored. The caller should `sodium_memzero` the result when done; prefer `kekFromUnlockKey`.
 */
export function parseUnlockKey(text: string): Buffer {
  if (typeof text !== "string") throw malformed("it is not a string");
  const trimmed = text.trim();
  if (trimmed.length === 0) throw malformed("it is empty");
  if (!trimmed.startsWith(UNLOCK_KEY_PREFIX)) {
    if (trimmed.startsWith("SWMKEY-")) throw malformed(`its version is not supported (expected prefix ${UNLOCK_KEY_PREFIX})`);
    throw malformed(`it does not start with ${UNLOCK_KEY_PREFIX}`);
  }
  const encoded = trimmed.slice(UNLOCK_KEY_PREFIX.length);
  if (encoded.length !== ENCODED_KEY_CHARS) {
    throw malformed(`its key part has ${encoded.length} characters, expected ${ENCODED_KEY_CHARS}`);
  }
  if (!BASE64_CHARS.test(encoded)) throw malformed("its key part is not valid unpadded base64");
  const bytes = Buffer.from(encoded, "base64");
  // Node's decoder is lenient: re-encoding catches non-canonical trailing bits.
  if (bytes.length !== KEY_BYTES || bytes.toString("base64").replace(/=+$/, "") !== encoded) {
    sodium.sodium_memzero(bytes);
    throw malformed("its key part is not valid unpadded base64");
  }
  return bytes;
}

/** The KEK for an unlock key, in secure memory. */
export function kekFromUnlockKey(text: string): DataKey {
  const bytes = parseUnlockKey(text);
  try {
    return DataKey.fromBytes(bytes);
  } finally {
    sodium.sodium_memzero(bytes);
  }
}

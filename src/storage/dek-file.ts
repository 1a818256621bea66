// The DEK file `DIR/keys/dek` (DESIGN.md §2): the current DEK and, during a rotation, the pending
// one; plain while autolock is off, wrapped with the KEK (XChaCha20-Poly1305) while it is on.
//
// Binary format, version 1 (all offsets in bytes):
//   0  magic "SHOALDEK" (8)   8  format version = 1   9  mode: 0 plain, 1 wrapped
//   body = flags (bit 0: pending present) ‖ current DEK (32) ‖ [pending DEK (32)]
//   plain:   10 body ‖ BLAKE2b-128 checksum of everything before it (catches damage)
//   wrapped: 10 KEK check (16) = keyed BLAKE2b-128 of a fixed label under the KEK, so a wrong key is
//            told apart from a damaged file ‖ 26 seal(KEK, body, AD = label ‖ bytes 0..25)
import sodium from "sodium-native";
import { readFile } from "node:fs/promises";
import { ShoalError, isShoalError } from "../base/errors.js";
import { DataKey, KEY_BYTES } from "../crypto/data-key.js";
import { seal, open } from "../crypto/aead.js";
import { writeFileAtomic } from "./atomic-file.js";
import type { StoreKeys } from "./encrypted-store.js";

const MAGIC = Buffer.from("SHOALDEK", "ascii");
const FORMAT_VERSION = 1;
const MODE_PLAIN = 0;
const MODE_WRAPPED = 1;
const PREFIX_BYTES = MAGIC.length + 2;
const CHECK_BYTES = 16;
const FLAG_PENDING = 0x01;
const WRAP_LABEL = Buffer.from("shoal/keys/dek wrapped by the KEK v1", "utf8");
const KEK_CHECK_LABEL = Buffer.from("shoal/keys/dek KEK check v1", "utf8");

function kekCheck(kek: DataKey): Buffer {
  const out = Buffer.alloc(CHECK_BYTES);
  sodium.crypto_generichash(out, KEK_CHECK_LABEL, kek.secureBytes());
  return out;
}

function checksum(bytes: Buffer): Buffer {
  const out = Buffer.alloc(CHECK_BYTES);
  sodium.crypto_generichash(out, bytes);
  return out;
}

function invalid(path: string, why: string): ShoalError {
  return new ShoalError("KEY_FILE_INVALID", `the DEK file ${path} is invalid (${why}); restore it from a backup or rejoin this manager`);
}

function encodeBody(keys: StoreKeys): Buffer {
  const body = Buffer.alloc(1 + KEY_BYTES * (keys.pending === undefined ? 1 : 2));
  body[0] = keys.pending === undefined ? 0 : FLAG_PENDING;
  body.set(keys.current.secureBytes(), 1);
  if (keys.pending !== undefined) body.set(keys.pending.secureBytes(), 1 + KEY_BYTES);
  return body;
}

function decodeBody(path: string, body: Buffer): StoreKeys {
  const flags = body[0];
  const expected = flags === 0 ? 1 + KEY_BYTES : flags === FLAG_PENDING ? 1 + 2 * KEY_BYTES : -1;
  if (expected < 0) throw invalid(path, `unknown flags ${flags}`);
  if (body.length !== expected) throw invalid(path, `key section is ${body.length} bytes, expected ${expected}`);
  const current = DataKey.fromBytes(body.subarray(1, 1 + KEY_BYTES));
  if (flags === 0) return { current };
  return { current, pending: DataKey.fromBytes(body.subarray(1 + KEY_BYTES)) };
}

/**
 * Writes the DEK file atomically with mode 0600: wrapped with `kek` when given (autolock on),
 * plain otherwise.
 */
export async function writeDekFile(path: string, keys: StoreKeys, kek?: DataKey): Promise<void> {
  const body = encodeBody(keys);
  try {
    const prefix = Buffer.from([...MAGIC, FORMAT_VERSION, kek === undefined ? MODE_PLAIN : MODE_WRAPPED]);
    let file: Buffer;
    if (kek === undefined) {
      const unsummed = Buffer.concat([prefix, body]);
      file = Buffer.concat([unsummed, checksum(unsummed)]);
      sodium.sodium_memzero(unsummed);
    } else {
      const header = Buffer.concat([prefix, kekCheck(kek)]);
      file = Buffer.concat([header, seal(kek, body, Buffer.concat([WRAP_LABEL, header]))]);
    }
    try {
      await writeFileAtomic(path, file, 0o600);
    } finally {
      sodium.sodium_memzero(file);
    }
  } finally {
    sodium.sodium_memzero(body);
  }
}

async function readRaw(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") {
      throw new ShoalError("NOT_FOUND", `there is no DEK file at ${path}; this data directory holds no manager state`, { cause });
    }
    throw cause;
  }
}

function parsePrefix(path: string, raw: Buffer): number {
  if (raw.length < PREFIX_BYTES || !raw.subarray(0, MAGIC.length).equals(MAGIC)) throw invalid(path, "not a shoal DEK file");
  if (raw[MAGIC.length] !== FORMAT_VERSION) throw invalid(path, `unknown format version ${raw[MAGIC.length]}`);
  const mode = raw[MAGIC.length + 1]!;
  if (mode !== MODE_PLAIN && mode !== MODE_WRAPPED) throw invalid(path, `unknown mode ${mode}`);
  return mode;
}

/** True when the DEK file is wrapped by a KEK (autolock on). */
export async function isDekFileWrapped(path: string): Promise<boolean> {
  return parsePrefix(path, await readRaw(path)) === MODE_WRAPPED;
}

/**
 * Reads the DEK file into secure-memory keys (the caller disposes them). A plain file is read with
 * or without `kek`. A wrapped one needs it: none → STORE_LOCKED, the wrong one → UNLOCK_KEY_WRONG.
 * Anything damaged → KEY_FILE_INVALID.
 */
export async function readDekFile(path: string, kek?: DataKey): Promise<StoreKeys> {
  const raw = await readRaw(path);
  try {
    const mode = parsePrefix(path, raw);
    if (mode === MODE_PLAIN) {
      if (raw.length < PREFIX_BYTES + 1 + CHECK_BYTES) throw invalid(path, "truncated");
      const unsummed = raw.subarray(0, raw.length - CHECK_BYTES);
      if (!sodium.sodium_memcmp(checksum(unsummed), raw.subarray(raw.length - CHECK_BYTES))) throw invalid(path, "checksum mismatch");
      return decodeBody(path, raw.subarray(PREFIX_BYTES, raw.length - CHECK_BYTES));
    }
    if (kek === undefined) {
      throw new ShoalError("STORE_LOCKED", "the DEK is encrypted because autolock is on; unlock this manager with 'shoal unlock' and the unlock key");
    }
    if (raw.length < PREFIX_BYTES + CHECK_BYTES) throw invalid(path, "truncated");
    const header = raw.subarray(0, PREFIX_BYTES + CHECK_BYTES);
    if (!sodium.sodium_memcmp(kekCheck(kek), header.subarray(PREFIX_BYTES))) {
      throw new ShoalError("UNLOCK_KEY_WRONG", "the unlock key is not the one this manager's data is locked with; the node stays locked");
    }
    let body: Buffer;
    try {
      body = open(kek, raw.subarray(header.length), Buffer.concat([WRAP_LABEL, header]));
    } catch (cause) {
      if (isShoalError(cause, "CRYPTO_FAILED")) throw invalid(path, "the wrapped key failed authentication although the unlock key matches: the file is damaged");
      throw cause;
    }
    try {
      return decodeBody(path, body);
    } finally {
      sodium.sodium_memzero(body);
    }
  } finally {
    sodium.sodium_memzero(raw);
  }
}

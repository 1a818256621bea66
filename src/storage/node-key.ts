// The node's TLS private key file `DIR/certificates/node.key` (DESIGN.md §2): PKCS#8 PEM, 0600;
// encrypted PKCS#8 (AES-256-CBC, passphrase = the unlock key string) while autolock is on, so that
// `openssl pkey -in node.key -passin pass:SWMKEY-1-...` opens it.
import { createPrivateKey, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { ShoalError } from "../base/errors.js";
import { parseUnlockKey } from "../crypto/unlock-key.js";
import { writeFileAtomic } from "./atomic-file.js";

const ENCRYPTED_PEM = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const PLAIN_PEM = "-----BEGIN PRIVATE KEY-----";

/** Checks the unlock key's format (UNLOCK_KEY_MALFORMED) without keeping its bytes. */
function checkedPassphrase(unlockKey: string): string {
  parseUnlockKey(unlockKey).fill(0);
  return unlockKey.trim();
}

/** Writes the private key atomically, mode 0600; encrypted with `unlockKey` when given. */
export async function writeNodeKey(path: string, key: KeyObject, unlockKey?: string): Promise<void> {
  if (key.type !== "private") throw new ShoalError("INVALID_ARGUMENT", `writeNodeKey needs a private key, got a ${key.type} key`);
  const pem =
    unlockKey === undefined
      ? key.export({ type: "pkcs8", format: "pem" })
      : key.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: checkedPassphrase(unlockKey) });
  await writeFileAtomic(path, pem, 0o600);
}

async function readPem(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") {
      throw new ShoalError("NOT_FOUND", `there is no node key at ${path}; this node has not joined a cluster`, { cause });
    }
    throw cause;
  }
}

/** True when the key file is encrypted (autolock on). */
export async function isNodeKeyEncrypted(path: string): Promise<boolean> {
  return (await readPem(path)).includes(ENCRYPTED_PEM);
}

/**
 * Reads the node key. An encrypted file needs `unlockKey`: none → STORE_LOCKED, the wrong one →
 * UNLOCK_KEY_WRONG. A plain file is read with or without it. Anything else → KEY_FILE_INVALID.
 */
export async function readNodeKey(path: string, unlockKey?: string): Promise<KeyObject> {
  const pem = await readPem(path);
  if (pem.includes(ENCRYPTED_PEM)) {
    if (unlockKey === undefined) {
      throw new ShoalError("STORE_LOCKED", "the node key is encrypted because autolock is on; unlock this manager with 'shoal unlock' and the unlock key");
    }
    const passphrase = checkedPassphrase(unlockKey);
    try {
      return createPrivateKey({ key: pem, format: "pem", passphrase });
    } catch (cause) {
      // A wrong passphrase surfaces as a decryption or padding failure inside OpenSSL.
      throw new ShoalError("UNLOCK_KEY_WRONG", `the unlock key does not decrypt the node key ${path}; the node stays locked`, { cause });
    }
  }
  if (!pem.includes(PLAIN_PEM)) {
    throw new ShoalError("KEY_FILE_INVALID", `the node key ${path} is not a PKCS#8 PEM private key; rejoin this node to get a new one`);
  }
  try {
    return createPrivateKey({ key: pem, format: "pem" });
  } catch (cause) {
    throw new ShoalError("KEY_FILE_INVALID", `the node key ${path} cannot be parsed; rejoin this node to get a new one`, { cause });
  }
}

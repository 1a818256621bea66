// Changing how a manager's keys are protected without losing data: re-wrapping the DEK file and the
// node key when autolock is switched or the unlock key rotated, and rotating the DEK itself.
//
// Turning autolock ON (DESIGN.md §2, as in Swarm): first `rewrapKeys(dataDir, { to: unlockKey })`,
// then `rotateStoreDek(store, dekFile, kekFromUnlockKey(unlockKey))`, so the new DEK is only ever
// written wrapped and data sealed under the DEK that sat on disk in plain is rewritten.
// Turning it OFF: `rewrapKeys(dataDir, { from: unlockKey })`. Rotating the unlock key:
// `rewrapKeys(dataDir, { from: oldKey, to: newKey })`.
import { access } from "node:fs/promises";
import { ShoalError, isShoalError } from "../base/errors.js";
import { DataKey } from "../crypto/data-key.js";
import { kekFromUnlockKey, parseUnlockKey } from "../crypto/unlock-key.js";
import { readDekFile, writeDekFile } from "./dek-file.js";
import { readNodeKey, writeNodeKey } from "./node-key.js";
import { dataDirPaths } from "./paths.js";
import type { EncryptedStore, StoreKeys } from "./encrypted-store.js";

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function isLockError(err: unknown): boolean {
  return isShoalError(err, "UNLOCK_KEY_WRONG") || isShoalError(err, "STORE_LOCKED");
}

/**
 * Re-wraps `DIR/keys/dek` and `DIR/certificates/node.key` from the unlock key `from` (undefined:
 * currently plain) to `to` (undefined: leave plain). Each file is replaced atomically, the DEK file
 * first. Files already under `to` (a re-run after a crash half-way) are accepted, so the call can
 * simply be repeated. A file that opens with neither key → UNLOCK_KEY_WRONG, nothing changed for it.
 * Returns which files were rewritten (a worker has no DEK file).
 */
export async function rewrapKeys(dataDir: string, change: { from?: string; to?: string }): Promise<{ dekFile: boolean; nodeKey: boolean }> {
  const paths = dataDirPaths(dataDir);
  // Validate both keys before touching any file.
  if (change.from !== undefined) parseUnlockKey(change.from).fill(0);
  if (change.to !== undefined) parseUnlockKey(change.to).fill(0);
  const hasDek = await exists(paths.dekFile);
  const hasNodeKey = await exists(paths.nodeKeyFile);
  if (!hasDek && !hasNodeKey) {
    throw new ShoalError("NOT_FOUND", `${dataDir} holds neither a DEK file nor a node key; nothing to re-wrap`);
  }

  const fromKek = change.from === undefined ? undefined : kekFromUnlockKey(change.from);
  const toKek = change.to === undefined ? undefined : kekFromUnlockKey(change.to);
  try {
    if (hasDek) {
      let keys: StoreKeys;
      try {
        keys = await readDekFile(paths.dekFile, fromKek);
      } catch (err) {
        if (!isLockError(err) || toKek === undefined) throw err;
        keys = await readDekFile(paths.dekFile, toKek);
      }
      try {
        await writeDekFile(paths.dekFile, keys, toKek);
      } finally {
        keys.current.dispose();
        keys.pending?.dispose();
      }
    }
    if (hasNodeKey) {
      let key;
      try {
        key = await readNodeKey(paths.nodeKeyFile, change.from);
      } catch (err) {
        if (!isLockError(err) || change.to === undefined) throw err;
        key = await readNodeKey(paths.nodeKeyFile, change.to);
      }
      await writeNodeKey(paths.nodeKeyFile, key, change.to);
    }
  } finally {
    fromKek?.dispose();
    toKek?.dispose();
  }
  return { dekFile: hasDek, nodeKey: hasNodeKey };
}

/**
 * Rotates the store's DEK: records the new key as pending in the DEK file, seals new writes with
 * it, rewrites every old value, records it as current, and disposes the old DEK. Durable at every
 * step: after a crash, reopen the store with the keys `readDekFile` returns and call this again to
 * finish (a pending key already in the store is finished, not replaced).
 */
export async function rotateStoreDek(store: EncryptedStore, dekFilePath: string, kek?: DataKey): Promise<{ rewrittenValues: number }> {
  if (store.dataKeys().pending === undefined) {
    const next = DataKey.generate();
    try {
      await writeDekFile(dekFilePath, { current: store.dataKeys().current, pending: next }, kek);
    } catch (err) {
      next.dispose();
      throw err;
    }
    store.rotateDek(next);
  }
  const { rewrittenValues, retired } = await store.reencryptAll();
  await writeDekFile(dekFilePath, store.dataKeys(), kek);
  retired?.dispose();
  return { rewrittenValues };
}

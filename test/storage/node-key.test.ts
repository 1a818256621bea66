// The node key file: plain and encrypted PKCS#8 PEM, checked with the real openssl.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateUnlockKey } from "../../src/crypto/index.js";
import { readNodeKey, writeNodeKey, isNodeKeyEncrypted } from "../../src/storage/index.js";
import { isShoalError } from "../../src/base/errors.js";
import { tempDir } from "./temp-dir.js";

function newKey() {
  return generateKeyPairSync("ec", { namedCurve: "P-256" });
}

function sameKey(a: ReturnType<typeof newKey>["privateKey"], pub: ReturnType<typeof newKey>["publicKey"]): boolean {
  const message = Buffer.from("proof of possession");
  return verify("sha256", message, pub, sign("sha256", message, a));
}

test("plain node key: PKCS#8 PEM, mode 0600, read back, openssl reads it without a passphrase", async (t) => {
  const dir = tempDir(t, "nodekey");
  const path = join(dir, "certificates", "node.key");
  const { privateKey, publicKey } = newKey();
  await writeNodeKey(path, privateKey);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.match(readFileSync(path, "utf8"), /^-----BEGIN PRIVATE KEY-----/);
  assert.equal(await isNodeKeyEncrypted(path), false);
  assert.ok(sameKey(await readNodeKey(path), publicKey));
  const out = execFileSync("openssl", ["pkey", "-in", path, "-pubout"], { encoding: "utf8" });
  assert.equal(out.trim(), publicKey.export({ type: "spki", format: "pem" }).toString().trim());
});

test("encrypted node key: openssl opens it with the unlock key as passphrase and refuses a wrong one", async (t) => {
  const dir = tempDir(t, "nodekey");
  const path = join(dir, "node.key");
  const unlockKey = generateUnlockKey();
  const { privateKey, publicKey } = newKey();
  await writeNodeKey(path, privateKey, unlockKey);
  const pem = readFileSync(path, "utf8");
  assert.match(pem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(await isNodeKeyEncrypted(path), true);

  const ok = spawnSync("openssl", ["pkey", "-in", path, "-passin", `pass:${unlockKey}`, "-pubout"], { encoding: "utf8" });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), publicKey.export({ type: "spki", format: "pem" }).toString().trim());

  const bad = spawnSync("openssl", ["pkey", "-in", path, "-passin", `pass:${generateUnlockKey()}`, "-pubout"], { encoding: "utf8" });
  assert.notEqual(bad.status, 0);
  assert.doesNotMatch(bad.stdout, /BEGIN PUBLIC KEY/);

  const none = spawnSync("openssl", ["pkey", "-in", path, "-passin", "pass:", "-pubout"], { encoding: "utf8" });
  assert.notEqual(none.status, 0);

  assert.ok(sameKey(await readNodeKey(path, unlockKey), publicKey));
  assert.ok(sameKey(await readNodeKey(path, `${unlockKey}\n`), publicKey));
  await assert.rejects(readNodeKey(path), (err: unknown) => isShoalError(err, "STORE_LOCKED"));
  await assert.rejects(readNodeKey(path, generateUnlockKey()), (err: unknown) => {
    assert.ok(isShoalError(err, "UNLOCK_KEY_WRONG"));
    assert.equal(err.message.includes(unlockKey), false);
    return true;
  });
  await assert.rejects(readNodeKey(path, "SWMKEY-1-short"), (err: unknown) => isShoalError(err, "UNLOCK_KEY_MALFORMED"));
});

test("an encrypted key made by openssl with the unlock key is read too", async (t) => {
  const dir = tempDir(t, "nodekey");
  const plainPath = join(dir, "plain.key");
  const encPath = join(dir, "enc.key");
  const unlockKey = generateUnlockKey();
  const { privateKey, publicKey } = newKey();
  await writeNodeKey(plainPath, privateKey);
  execFileSync("openssl", ["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", plainPath, "-out", encPath, "-passout", `pass:${unlockKey}`]);
  assert.ok(sameKey(await readNodeKey(encPath, unlockKey), publicKey));
});

test("garbage, a public key and a missing file are refused with typed errors", async (t) => {
  const dir = tempDir(t, "nodekey");
  const path = join(dir, "node.key");
  const { publicKey, privateKey } = newKey();
  writeFileSync(path, "hello");
  await assert.rejects(readNodeKey(path), (err: unknown) => isShoalError(err, "KEY_FILE_INVALID"));
  writeFileSync(path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  await assert.rejects(readNodeKey(path), (err: unknown) => isShoalError(err, "KEY_FILE_INVALID"));
  await assert.rejects(writeNodeKey(path, publicKey), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT"));
  await assert.rejects(writeNodeKey(path, privateKey, "SWMKEY-1-nope"), (err: unknown) => isShoalError(err, "UNLOCK_KEY_MALFORMED"));
  await assert.rejects(readNodeKey(join(dir, "missing.key")), (err: unknown) => isShoalError(err, "NOT_FOUND"));
});

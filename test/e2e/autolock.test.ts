// Autolock (DESIGN.md §3 rule 5) with real daemons: the key is printed once; a restarted manager is
// locked (info says so, no raft, no TLS listener, node.key unreadable without the key); a wrong key
// is refused and it stays locked; the right key boots it; rotation re-wraps every manager's keys so
// the old key no longer unlocks; turning autolock on rotates the DEK; turning it off unlocks restarts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { connect } from "node:net";
import { readFileSync } from "node:fs";
import { isShoalError } from "../../src/base/errors.js";
import { ProcessCluster, waitFor, waitForVoters, type NodeProcess } from "./cluster.js";

function opensslReadsKey(node: NodeProcess, pass?: string): boolean {
  try {
    execFileSync("openssl", ["pkey", "-in", `${node.dataDir}/certificates/node.key`, "-noout", ...(pass === undefined ? ["-passin", "pass:"] : ["-passin", `pass:${pass}`])], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

test("autolock: locked restart, wrong and right keys, rotation on every manager, DEK rotation, and off again", { timeout: 150_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const [m1, m2, m3] = (await Promise.all(["m1", "m2", "m3"].map((n) => cluster.add(n)))) as [NodeProcess, NodeProcess, NodeProcess];
  const keys: string[] = [];

  const init = await m1.cli(["init", "--autolock"]);
  assert.equal(init.code, 0, init.stderr);
  const printed = /SWMKEY-1-[A-Za-z0-9+/]{43}/.exec(init.stdout)?.[0];
  assert.ok(printed !== undefined, "init --autolock prints the unlock key");
  keys.push(printed);
  const managerToken = (await m1.cli(["join-token", "manager", "-q"])).stdout.trim();
  await cluster.join("m2", managerToken, m1.addr);
  await cluster.join("m3", managerToken, m1.addr);
  await waitForVoters(m1, 3, { timeoutMs: 20_000 });
  assert.equal((await m1.cli(["unlock-key", "-q"])).stdout.trim(), printed);
  // Joined managers wrap their keys with the replicated unlock key once they applied it.
  await waitFor("m2 and m3 to wrap their node keys", () => (!opensslReadsKey(m2) && opensslReadsKey(m2, printed) && !opensslReadsKey(m3)) || undefined, 15_000);
  assert.ok(opensslReadsKey(m1, printed));
  assert.ok(!opensslReadsKey(m1));

  // Restart m2: it comes up locked.
  await m2.stop();
  await m2.start();
  const locked = await m2.info();
  assert.equal(locked.locked, true);
  assert.equal(locked.state, "locked");
  assert.equal(await portOpen(m2.port), false, "a locked manager opens no TLS listener");
  await assert.rejects(m2.client.listNodes(), (err) => isShoalError(err) && err.code === "LOCKED");
  await assert.rejects(m2.client.leave({ force: true }), (err) => isShoalError(err) && err.code === "LOCKED");
  const lockedCli = await m2.cli(["node", "ls"]);
  assert.notEqual(lockedCli.code, 0);
  assert.match(lockedCli.stderr, /locked/);
  const wrong = await m2.cli(["unlock"], "SWMKEY-1-" + "A".repeat(43) + "\n");
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /does not decrypt|unlock key/);
  assert.equal((await m2.info()).state, "locked");
  const malformed = await m2.cli(["unlock"], "not-a-key\n");
  assert.notEqual(malformed.code, 0);
  const right = await m2.cli(["unlock"], printed + "\n");
  assert.equal(right.code, 0, right.stderr);
  await waitFor("m2 to rejoin raft", async () => (await m2.info()).leaderNodeId !== "" || undefined, 15_000);
  assert.ok(await portOpen(m2.port));
  assert.equal((await m2.client.listNodes()).length, 3);

  // Rotate the unlock key: every manager re-wraps; the old key no longer unlocks.
  const rotated = await m1.cli(["unlock-key", "--rotate", "-q"]);
  assert.equal(rotated.code, 0, rotated.stderr);
  const newKey = rotated.stdout.trim();
  keys.push(newKey);
  assert.notEqual(newKey, printed);
  await waitFor("every manager to re-wrap under the new key", () => [m1, m2, m3].every((m) => opensslReadsKey(m, newKey)) || undefined, 15_000);
  await m3.stop();
  await m3.start();
  assert.equal((await m3.info()).locked, true);
  const old = await m3.cli(["unlock"], printed + "\n");
  assert.notEqual(old.code, 0);
  assert.equal((await m3.info()).state, "locked");
  assert.equal((await m3.cli(["unlock"], newKey + "\n")).code, 0);
  await waitFor("m3 to rejoin raft", async () => (await m3.info()).leaderNodeId !== "" || undefined, 15_000);

  // Off: keys go back to plain and a restart is not locked.
  const off = await m2.cli(["update", "--autolock=false"]);
  assert.equal(off.code, 0, off.stderr);
  await waitFor("every manager to unwrap its keys", () => [m1, m2, m3].every((m) => opensslReadsKey(m)) || undefined, 15_000);
  const dekBefore = readFileSync(`${m1.dataDir}/keys/dek`);
  await m1.stop();
  await m1.start();
  assert.equal((await m1.info()).locked, false);
  await waitFor("m1 back in raft", async () => (await m1.info()).leaderNodeId !== "" || undefined, 15_000);

  // On again: a new key is printed once, and the DEK is rotated (the old DEK file no longer matches).
  const on = await m3.cli(["update", "--autolock=true"]);
  assert.equal(on.code, 0, on.stderr);
  const third = /SWMKEY-1-[A-Za-z0-9+/]{43}/.exec(on.stdout)?.[0];
  assert.ok(third !== undefined);
  keys.push(third);
  await waitFor("m1 to wrap and rotate its DEK", () => {
    const dek = readFileSync(`${m1.dataDir}/keys/dek`);
    return (dek[9] === 1 && opensslReadsKey(m1, third)) || undefined;
  }, 15_000);
  const dekAfter = readFileSync(`${m1.dataDir}/keys/dek`);
  assert.notDeepEqual(dekAfter, dekBefore);
  assert.equal(dekBefore[9], 0, "the DEK file was plain while autolock was off");

  // No unlock key in any log line.
  const logs = cluster.logs();
  for (const k of keys) assert.equal(logs.includes(k), false, "an unlock key appears in a daemon log");
  assert.equal(logs.includes(k64(printed)), false);
});

/** The key's base64 body alone, in case something logged it without its prefix. */
function k64(key: string): string {
  return key.slice("SWMKEY-1-".length);
}

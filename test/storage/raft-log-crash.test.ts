// A process killed with SIGKILL in the middle of raft log writes leaves a log that recovers to a
// state one whole save() produced: every acknowledged save is there, and entries and hard state
// (written in one batch) agree.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore, RaftLogStorage } from "../../src/storage/index.js";
import { tempDir } from "./temp-dir.js";

const root = resolve(import.meta.dirname, "..", "..");

const CHILD = `
import { DataKey } from ${JSON.stringify(join(root, "src/crypto/index.ts"))};
import { EncryptedStore, RaftLogStorage } from ${JSON.stringify(join(root, "src/storage/index.ts"))};
const key = DataKey.fromBytes(Buffer.from(process.env.TEST_DEK_HEX, "hex"));
const store = await EncryptedStore.open(process.env.TEST_STORE_DIR, { current: key });
const log = await RaftLogStorage.open(store);
let term = 1;
for (let round = 0; ; round++) {
  const last = log.lastIndex();
  // Every 5th save replaces the last two entries under a new term (conflict truncation).
  const from = round % 5 === 4 && last > 2 ? last - 1 : last + 1;
  if (from <= last) term++;
  const entries = [];
  for (let i = from; i < from + 8; i++) entries.push({ index: i, term, type: 0, data: Buffer.alloc(200, i & 0xff) });
  await log.save({ entries, hardState: { term, vote: 1n, commit: from + 7 } });
  process.stdout.write("acked " + (from + 7) + " " + term + "\\n");
}
`;

test("SIGKILL during writes: recovery gives a consistent log holding every acknowledged save", async (t) => {
  const dir = tempDir(t, "raftlog-crash");
  const storeDir = join(dir, "state");
  const script = join(dir, "child.mts");
  writeFileSync(script, CHILD);
  const key = DataKey.generate();
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    env: { ...process.env, TEST_DEK_HEX: key.exportBytes().toString("hex"), TEST_STORE_DIR: storeDir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  let lastAcked = { index: 0, term: 0 };
  let acks = 0;
  await new Promise<void>((resolveKill, reject) => {
    let buffered = "";
    child.stdout.on("data", (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        const [, index, term] = line.split(" ");
        lastAcked = { index: Number(index), term: Number(term) };
        if (++acks === 150) {
          child.kill("SIGKILL");
        }
      }
    });
    child.on("exit", (_code, signal) => (signal === "SIGKILL" ? resolveKill() : reject(new Error(`child exited early: ${stderr}`))));
  });
  assert.ok(acks >= 150);

  const store = await EncryptedStore.open(storeDir, { current: key });
  t.after(async () => {
    await store.close();
    key.dispose();
  });
  const log = await RaftLogStorage.open(store);
  const loaded = await log.load();
  const last = log.lastIndex();
  assert.ok(last >= lastAcked.index, `acknowledged ${lastAcked.index} but recovered only ${last}`);
  assert.equal(loaded.hardState.commit, last, "hard state and entries come from different saves");
  assert.ok(loaded.hardState.term >= lastAcked.term);
  assert.equal(loaded.entries.length, last);
  loaded.entries.forEach((e, i) => {
    assert.equal(e.index, i + 1);
    assert.deepEqual(Buffer.from(e.data), Buffer.alloc(200, e.index & 0xff));
  });
  assert.equal(loaded.entries[last - 1]!.term, loaded.hardState.term);
});

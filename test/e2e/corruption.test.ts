// A manager whose LevelDB write-ahead log was damaged while it was stopped must not come back with
// fewer values than it acknowledged (issue 8 §5): with one byte flipped inside a record in the middle
// of `state/*.log` (followed by records of later writes), the restarted daemon exits non-zero with STORE_CORRUPT naming the file, and
// nothing answers on its socket. Before the open-time check it came up leader, missing values.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ProcessCluster, REPO_ROOT, waitFor } from "./cluster.js";
import { LOG_BLOCK_BYTES, physicalRecords } from "../storage/leveldb-records.js";

const VALUES_BEFORE_RESTART = 10;
const VALUES_IN_LOG = 40;
const VALUE_BYTES = 2048;

function valueOf(i: number): Buffer {
  return Buffer.alloc(VALUE_BYTES, `value ${i};`);
}


test("a manager with a flipped byte in the middle of its write-ahead log refuses to start, naming the file", { timeout: 120_000 }, async (t) => {
  const cluster = new ProcessCluster();
  t.after(() => cluster.close());
  const m1 = await cluster.add("m1");
  await cluster.init("m1");
  for (let i = 0; i < VALUES_BEFORE_RESTART; i++) await m1.putValue(`k${i}`, valueOf(i));

  // A clean restart first: every value is back (LevelDB moves the replayed log into a table).
  await m1.stop("SIGTERM");
  await m1.start();
  await cluster.leader();
  for (let i = 0; i < VALUES_BEFORE_RESTART; i++) assert.deepEqual(await m1.getValue(`k${i}`), valueOf(i), `k${i} after a clean restart`);

  const total = VALUES_BEFORE_RESTART + VALUES_IN_LOG;
  for (let i = VALUES_BEFORE_RESTART; i < total; i++) await m1.putValue(`k${i}`, valueOf(i));
  await m1.stop("SIGTERM");

  const stateDir = join(m1.dataDir, "state");
  const logs = readdirSync(stateDir)
    .filter((n) => n.endsWith(".log"))
    .map((n) => join(stateDir, n))
    .filter((f) => statSync(f).size > 0);
  assert.equal(logs.length, 1, `one non-empty write-ahead log: ${logs.join(", ")}`);
  const wal = logs[0]!;
  const bytes = readFileSync(wal);
  const records = physicalRecords(bytes);
  // The values written since the restart are still in the log, not flushed into a table.
  assert.ok(bytes.length >= VALUES_IN_LOG * VALUE_BYTES, `the log holds the last ${VALUES_IN_LOG} writes (${bytes.length} bytes)`);
  // A record in the log's last 32 KiB block with records after it: LevelDB drops the rest of a
  // damaged block and resumes at the next one, so damage in the last block loses the newest writes
  // without a gap that the raft log's own recovery would notice (what the probe saw).
  const lastBlock = Math.floor(records[records.length - 1]!.at / LOG_BLOCK_BYTES);
  const inLastBlock = records.filter((r) => Math.floor(r.at / LOG_BLOCK_BYTES) === lastBlock);
  assert.ok(inLastBlock.length >= 4, `the last block holds ${inLastBlock.length} records`);
  const victim = inLastBlock[Math.floor(inLastBlock.length / 2) - 1]!;
  const offset = victim.data + Math.floor((victim.end - victim.data) / 2);
  bytes[offset] ^= 0x01;
  writeFileSync(wal, bytes);
  t.diagnostic(`flipped byte ${offset} of ${bytes.length} in ${wal} (record ${records.indexOf(victim) + 1} of ${records.length})`);

  // Started by hand rather than by NodeProcess.start, which expects the daemon to come up (and keeps
  // polling its socket for 30 s after the process has exited).
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO_ROOT, "src/cli/main.ts"), "--data-dir", m1.dataDir, "daemon", "--listen-addr", m1.addr, ...m1.extraFlags],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SHOAL_SOCKET: "" } },
  );
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  // Liveness guard only: the daemon either exits, or comes up (the bug), which is checked below.
  const outcome = await waitFor(
    "the damaged daemon to exit or to answer",
    async () => (exitCode !== undefined ? "exited" : existsSync(m1.socketPath) ? (await m1.info(), "up") : undefined),
    60_000,
    100,
  );
  if (outcome === "up") {
    let found = 0;
    for (let i = 0; i < total; i++) if ((await m1.getValue(`k${i}`).catch(() => undefined)) !== undefined) found++;
    assert.fail(`the daemon started on the damaged log and answers with ${found} of ${total} values`);
  }
  await exited;
  assert.notEqual(exitCode, 0, `the daemon exits non-zero:\n${output}`);
  assert.equal(existsSync(m1.socketPath), false, "nothing answers on the control socket");
  assert.match(output, /STORE_CORRUPT|corrupted/);
  assert.ok(output.includes(wal), `the error names ${wal}:\n${output}`);
  assert.match(output, /restore .* from a backup/i);
  t.diagnostic(output.trim().split("\n").slice(-3).join("\n"));
});

// Benchmark: EncryptedStore vs plain classic-level writes with sync:true, batches of 1 and 64
// values of 256 B. Both stores are open side by side and every plain batch is followed by an
// encrypted one, timed separately, so disk noise (fsync latency drifts a lot on a shared disk) hits
// both alike. Prints JSON; target: encrypted/plain records per second ≥ 0.85.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { ClassicLevel } from "classic-level";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore, type StoreOp } from "../../src/storage/index.js";

const DURATION_MS_PER_MODE = Number(process.env.BENCH_DURATION_MS ?? 3000);
const VALUE_BYTES = 256;

interface Writer {
  write(ops: StoreOp[]): Promise<void>;
  close(): Promise<void>;
}

async function plainWriter(dir: string): Promise<Writer> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer" });
  await db.open();
  // A chained batch, as EncryptedStore writes, so the ratio measures the sealing and nothing else.
  return {
    write: (ops) => {
      const batch = db.batch();
      for (const op of ops) {
        if (op.type === "put") batch.put(op.key, op.value);
        else batch.del(op.key);
      }
      return batch.write({ sync: true });
    },
    close: () => db.close(),
  };
}

async function encryptedWriter(dir: string): Promise<Writer> {
  const key = DataKey.generate();
  const store = await EncryptedStore.open(dir, { current: key });
  return {
    write: (ops) => store.batch(ops, { sync: true }),
    close: async () => {
      await store.close();
      key.dispose();
    },
  };
}

function opsFactory(batchSize: number): () => StoreOp[] {
  const value = randomBytes(VALUE_BYTES);
  let seq = 0;
  return () => {
    const ops: StoreOp[] = [];
    for (let i = 0; i < batchSize; i++) {
      const key = Buffer.alloc(12);
      key.write("obj/", 0, "latin1");
      key.writeBigUInt64BE(BigInt(seq++), 4);
      ops.push({ type: "put", key, value });
    }
    return ops;
  };
}

async function runCase(batchSize: number) {
  const plainDir = mkdtempSync(join(tmpdir(), "shoal-bench-plain-"));
  const encDir = mkdtempSync(join(tmpdir(), "shoal-bench-enc-"));
  const plain = await plainWriter(plainDir);
  const enc = await encryptedWriter(encDir);
  const nextPlain = opsFactory(batchSize);
  const nextEnc = opsFactory(batchSize);
  for (let i = 0; i < 20; i++) {
    await plain.write(nextPlain());
    await enc.write(nextEnc());
  }
  let batches = 0;
  let plainMs = 0;
  let encMs = 0;
  const start = performance.now();
  while (performance.now() - start < 2 * DURATION_MS_PER_MODE) {
    // Alternate which goes first so neither always follows the other's fsync.
    const pair: Array<[Writer, () => StoreOp[], "p" | "e"]> = [[plain, nextPlain, "p"], [enc, nextEnc, "e"]];
    if (batches % 2 === 1) pair.reverse();
    for (const [writer, next, mode] of pair) {
      const ops = next();
      const t0 = performance.now();
      await writer.write(ops);
      const dt = performance.now() - t0;
      if (mode === "p") plainMs += dt;
      else encMs += dt;
    }
    batches++;
  }
  await plain.close();
  await enc.close();
  rmSync(plainDir, { recursive: true, force: true });
  rmSync(encDir, { recursive: true, force: true });
  const plainRate = (batches * batchSize) / (plainMs / 1000);
  const encRate = (batches * batchSize) / (encMs / 1000);
  return {
    batchSize,
    batchesEach: batches,
    plainRecordsPerSec: Math.round(plainRate),
    encryptedRecordsPerSec: Math.round(encRate),
    plainBatchesPerSec: Math.round(plainRate / batchSize),
    encryptedBatchesPerSec: Math.round(encRate / batchSize),
    ratio: Math.round((encRate / plainRate) * 1000) / 1000,
  };
}

const cases = [await runCase(1), await runCase(64)];
console.log(JSON.stringify({ bench: "storage-write", valueBytes: VALUE_BYTES, sync: true, durationMsPerMode: DURATION_MS_PER_MODE, target: { ratioAtLeast: 0.85 }, cases }));

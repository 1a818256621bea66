// Benchmark: what the open-time check of LevelDB's files (src/storage/leveldb/check-files.ts) costs
// on a store of a given size: a store filled with sealed 4 KiB values (incompressible, as every
// stored value is), closed, then opened again; reports the check alone and the whole open. The check
// reads every live byte once, so it grows with the store; writes pay nothing for it. Prints JSON.
//   node --import tsx scripts/bench/store-open.ts [--mib 256] [--rounds 3]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore, type StoreOp } from "../../src/storage/index.js";
import { checkStoreFiles } from "../../src/storage/leveldb/check-files.js";
import { argNumber } from "./lib/args.js";

const STORE_MIB = argNumber("--mib", 256);
const ROUNDS = argNumber("--rounds", 3);
const VALUE_BYTES = 4096;
const VALUES_PER_BATCH = 256;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)]! * 10) / 10;
}

const dir = mkdtempSync(join(tmpdir(), "shoal-bench-open-"));
const key = DataKey.generate();
try {
  let store = await EncryptedStore.open(dir, { current: key });
  const batches = Math.ceil((STORE_MIB * 1024 * 1024) / (VALUE_BYTES * VALUES_PER_BATCH));
  let seq = 0;
  for (let b = 0; b < batches; b++) {
    const ops: StoreOp[] = [];
    for (let i = 0; i < VALUES_PER_BATCH; i++) {
      const k = Buffer.alloc(12);
      k.write("obj/", 0, "latin1");
      k.writeBigUInt64BE(BigInt(seq++), 4);
      ops.push({ type: "put", key: k, value: randomBytes(VALUE_BYTES) });
    }
    await store.batch(ops, { sync: b === batches - 1 });
  }
  await store.close();
  const checkMs: number[] = [];
  const openMs: number[] = [];
  let checked = { files: 0, bytes: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    let t0 = performance.now();
    const result = await checkStoreFiles(dir);
    checkMs.push(performance.now() - t0);
    checked = { files: result.files, bytes: result.bytes };
    t0 = performance.now();
    store = await EncryptedStore.open(dir, { current: key });
    openMs.push(performance.now() - t0);
    await store.close();
  }
  const checkedMiB = checked.bytes / (1024 * 1024);
  console.log(
    JSON.stringify({
      bench: "store-open",
      storeMiB: STORE_MIB,
      rounds: ROUNDS,
      checkedFiles: checked.files,
      checkedMiB: Math.round(checkedMiB * 10) / 10,
      checkMsP50: median(checkMs),
      openMsP50: median(openMs),
      checkMiBPerSec: Math.round(checkedMiB / (median(checkMs) / 1000)),
    }),
  );
} finally {
  key.dispose();
  rmSync(dir, { recursive: true, force: true });
}

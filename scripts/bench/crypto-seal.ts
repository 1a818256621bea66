// Benchmark: XChaCha20-Poly1305 seal+open throughput for 256 B and 64 KiB values. Prints JSON.
import { randomBytes } from "node:crypto";
import { DataKey, seal, open } from "../../src/crypto/index.js";

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 2000);

function run(valueBytes: number): { valueBytes: number; sealOpenOpsPerSec: number; sealOpsPerSec: number; openOpsPerSec: number; sealOpenMBPerSec: number } {
  const key = DataKey.generate();
  const plaintext = randomBytes(valueBytes);
  const ad = Buffer.from("bench/key/0001");
  // Warm up.
  for (let i = 0; i < 200; i++) open(key, seal(key, plaintext, ad), ad);

  const measure = (fn: () => void): number => {
    let ops = 0;
    const start = process.hrtime.bigint();
    const deadline = start + BigInt(DURATION_MS) * 1_000_000n;
    let now = start;
    while (now < deadline) {
      for (let i = 0; i < 64; i++) fn();
      ops += 64;
      now = process.hrtime.bigint();
    }
    return ops / (Number(now - start) / 1e9);
  };
  const sealed = seal(key, plaintext, ad);
  const both = measure(() => open(key, seal(key, plaintext, ad), ad));
  const sealOnly = measure(() => seal(key, plaintext, ad));
  const openOnly = measure(() => open(key, sealed, ad));
  key.dispose();
  return {
    valueBytes,
    sealOpenOpsPerSec: Math.round(both),
    sealOpsPerSec: Math.round(sealOnly),
    openOpsPerSec: Math.round(openOnly),
    // Plaintext megabytes (10^6) sealed and opened per second, counting each byte once.
    sealOpenMBPerSec: Math.round(((both * valueBytes) / 1e6) * 10) / 10,
  };
}

const results = [run(256), run(64 * 1024)];
console.log(JSON.stringify({ bench: "crypto-seal", cipher: "xchacha20poly1305-ietf", durationMsPerCase: DURATION_MS, results }));

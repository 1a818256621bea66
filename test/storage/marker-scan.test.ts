// Encryption at rest, checked from the outside: distinctive marker values written through the
// EncryptedStore appear nowhere in the bytes of any file under the store directory. The same scan
// over a plain ClassicLevel finds them, which proves the scan can see LevelDB's files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { ClassicLevel } from "classic-level";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore } from "../../src/storage/index.js";
import { filesContaining, filesUnder } from "../e2e/cluster.js";
import { tempDir } from "./temp-dir.js";

interface Markers {
  /** 4 KiB of random bytes: incompressible, so snappy leaves them as they are. */
  big: Buffer;
  /** A short ASCII marker with a random part so it cannot occur by chance. */
  short: Buffer;
  /** Small random values, the size LevelDB keeps inline in the log and in tables. */
  small: Buffer[];
}

function makeMarkers(): Markers {
  return {
    big: randomBytes(4096),
    short: Buffer.from(`MARKER-${randomBytes(8).toString("hex")}`, "ascii"),
    small: Array.from({ length: 20 }, () => randomBytes(24)),
  };
}

// Enough filler to make LevelDB flush its memtable into .ldb tables, so both the write-ahead log
// and the sorted tables are scanned.
// LevelDB compacts a full memtable in the background; it blocks a writer only when a second memtable
// fills before the first is flushed, so three memtables (4 MiB each) guarantee a table file exists.
const FILLER_VALUES = 9000;

async function writeAll(put: (key: Buffer, value: Buffer) => Promise<void>, markers: Markers): Promise<void> {
  await put(Buffer.from("marker/big"), markers.big);
  await put(Buffer.from("marker/short"), markers.short);
  for (let i = 0; i < markers.small.length; i++) await put(Buffer.from(`marker/small/${i}`), markers.small[i]!);
  for (let i = 0; i < FILLER_VALUES; i++) await put(Buffer.from(`filler/${String(i).padStart(6, "0")}`), randomBytes(1500));
}

function assertScan(dir: string, markers: Markers, expectFound: boolean): void {
  const needles = [markers.big, markers.short, ...markers.small];
  for (const needle of needles) {
    const hits = filesContaining(dir, needle);
    if (expectFound) assert.ok(hits.length > 0, `marker of ${needle.length} bytes not found in the plain store`);
    else assert.deepEqual(hits, [], `marker of ${needle.length} bytes found on disk`);
  }
}

test("markers written through the EncryptedStore are not found in any file; in a plain LevelDB they are", async (t) => {
  const encryptedDir = tempDir(t, "marker-enc");
  const plainDir = tempDir(t, "marker-plain");
  const markers = makeMarkers();

  const key = DataKey.generate();
  const store = await EncryptedStore.open(encryptedDir, { current: key });
  await writeAll((k, v) => store.put(k, v), markers);
  await store.close();
  key.dispose();
  const encFiles = filesUnder(encryptedDir).map((f) => f.slice(encryptedDir.length + 1));
  assert.ok(encFiles.some((f) => f.endsWith(".ldb")), `expected LevelDB tables, saw ${encFiles.join(", ")}`);
  assert.ok(encFiles.some((f) => f.endsWith(".log")));
  assertScan(encryptedDir, markers, false);

  const plain = new ClassicLevel<Buffer, Buffer>(plainDir, { keyEncoding: "buffer", valueEncoding: "buffer" });
  await plain.open();
  await writeAll((k, v) => plain.put(k, v), markers);
  await plain.close();
  assertScan(plainDir, markers, true);
});

test("markers are not found right after writing either (write-ahead log only, store still open)", async (t) => {
  const dir = tempDir(t, "marker-wal");
  const markers = makeMarkers();
  const key = DataKey.generate();
  const store = await EncryptedStore.open(dir, { current: key });
  await store.put(Buffer.from("marker/short"), markers.short, { sync: true });
  await store.put(Buffer.from("marker/big"), markers.big, { sync: true });
  for (let i = 0; i < markers.small.length; i++) await store.put(Buffer.from(`marker/small/${i}`), markers.small[i]!, { sync: true });
  assertScan(dir, markers, false);
  await store.close();
  assertScan(dir, markers, false);
  key.dispose();
});

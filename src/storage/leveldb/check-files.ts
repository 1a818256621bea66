// Checks a LevelDB directory before LevelDB opens it, because opening is where LevelDB, without
// paranoid_checks (which classic-level 3.0.0 cannot turn on), "repairs" a damaged write-ahead log by
// dropping every record after the damage, logging it only to its own LOG file. For a Raft voter that
// drops entries it acknowledged, which breaks Raft's safety, so damage to synced data stops the node.
//
// Why a check at open rather than an own write-ahead log or a rebuilt binding: it covers everything
// LevelDB holds (raft entries, hard state, snapshot chunks, objects, and the MANIFEST and tables that
// hold them after compaction), not only raft entries; it costs nothing per write; and it is small
// (the log, table and MANIFEST formats are public and stable since 2011). Rebuilding classic-level
// with paranoid_checks would mean patching node_modules on every install.
//
// What is checked: CURRENT names an existing MANIFEST; the MANIFEST reads back whole; every table it
// lists exists at its recorded size and every block's CRC matches; every log LevelDB will replay
// reads back whole. One exception, as in etcd's WAL: the newest log may end in a torn tail (an
// append cut short by a crash before its sync returned): damage after which no valid record follows
// and which is not a whole record with altered bytes (see LogDamage.tornAppend); it is reported, and
// LevelDB drops it. Any other damage is to synced data and stops the node. This assumes no other process writes the directory meanwhile,
// which the daemon's DIR/LOCK guarantees.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ShoalError } from "../../base/errors.js";
import { scanLog, type LogDamage } from "./log-format.js";
import { liveVersion, type LiveVersion } from "./manifest.js";
import { tableDamage } from "./table-check.js";

export interface TornTail {
  file: string;
  /** Offset of the first byte LevelDB will drop. */
  offset: number;
  droppedBytes: number;
  reason: string;
}

export interface StoreFilesCheck {
  /** Files read and verified, and their bytes. */
  files: number;
  bytes: number;
  tornTail: TornTail | undefined;
}

const CURRENT = "CURRENT";
const LOG_FILE = /^(\d+)\.log$/;
const LEVELDB_DATA_FILE = /^(?:MANIFEST-\d+|\d+\.(?:log|ldb|sst))$/;

function whatToDo(dir: string): string {
  return (
    `This manager does not start, because LevelDB would repair this by silently dropping data it already acknowledged. ` +
    `Restore ${dir} from a backup; or remove this manager from the cluster (\`shoal node demote\`, then \`shoal node rm --force\`, on a healthy manager), ` +
    `empty this node's data directory and join it again with a manager token, so that it receives the log from the others.`
  );
}

function corrupt(dir: string, file: string, what: string): ShoalError {
  return new ShoalError("STORE_CORRUPT", `the encrypted store at ${dir} is corrupted: ${join(dir, file)} ${what}. ${whatToDo(dir)}`);
}

function describeDamage(damage: LogDamage): string {
  const after =
    damage.validRecordAfter !== undefined
      ? `, and valid records follow at offset ${damage.validRecordAfter}`
      : damage.tornAppend
        ? ""
        : ", in a whole record that was written and then altered, not cut short by a crash";
  return `is damaged at offset ${damage.offset} (${damage.reason}${after})`;
}

async function readLiveVersion(dir: string, names: readonly string[]): Promise<{ version: LiveVersion; manifest: string; bytes: number }> {
  const current = (await readFile(join(dir, CURRENT))).toString("latin1");
  const match = /^(MANIFEST-\d+)\n$/.exec(current);
  if (match === null) throw corrupt(dir, CURRENT, "does not name a MANIFEST file");
  const manifest = match[1]!;
  if (!names.includes(manifest)) throw corrupt(dir, CURRENT, `names ${manifest}, which is missing`);
  const bytes = await readFile(join(dir, manifest));
  const scan = scanLog(bytes, true);
  // LevelDB syncs the MANIFEST after every edit; only an edit cut short by the end of the file may
  // be a crash's torn append (LevelDB ignores it too).
  if (scan.damage !== undefined && (!scan.damage.pastEnd || scan.damage.validRecordAfter !== undefined)) {
    throw corrupt(dir, manifest, describeDamage(scan.damage));
  }
  try {
    return { version: liveVersion(scan.records), manifest, bytes: bytes.length };
  } catch (err) {
    throw corrupt(dir, manifest, `does not describe a database (${(err as Error).message})`);
  }
}

function tableFileName(number: number, names: ReadonlySet<string>): string | undefined {
  const base = String(number).padStart(6, "0");
  for (const name of [`${base}.ldb`, `${base}.sst`]) if (names.has(name)) return name;
  return undefined;
}

/** Throws STORE_CORRUPT naming the file if synced data in the LevelDB at `dir` is damaged. */
export async function checkStoreFiles(dir: string): Promise<StoreFilesCheck> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { files: 0, bytes: 0, tornTail: undefined };
    throw err;
  }
  const nameSet = new Set(names);
  if (!nameSet.has(CURRENT)) {
    // Without CURRENT LevelDB would create an empty database over the old files.
    const leftover = names.find((name) => LEVELDB_DATA_FILE.test(name));
    if (leftover === undefined) return { files: 0, bytes: 0, tornTail: undefined };
    throw corrupt(dir, CURRENT, `is missing although ${leftover} and other LevelDB files are there`);
  }
  const { version, bytes: manifestBytes } = await readLiveVersion(dir, names);
  let files = 2;
  let bytes = manifestBytes;
  for (const [number, size] of version.tables) {
    const name = tableFileName(number, nameSet);
    if (name === undefined) throw corrupt(dir, `${String(number).padStart(6, "0")}.ldb`, "is listed in the MANIFEST but missing");
    const table = await readFile(join(dir, name));
    if (table.length !== size) throw corrupt(dir, name, `is ${table.length} bytes, but the MANIFEST recorded ${size}`);
    const damage = tableDamage(table);
    if (damage !== undefined) throw corrupt(dir, name, `is damaged (${damage})`);
    files++;
    bytes += table.length;
  }
  const logs = names
    .map((name) => ({ name, number: Number(LOG_FILE.exec(name)?.[1] ?? Number.NaN) }))
    .filter(({ number }) => Number.isInteger(number) && (number >= version.logNumber || (number !== 0 && number === version.prevLogNumber)))
    .sort((a, b) => a.number - b.number);
  let tornTail: TornTail | undefined;
  for (const [i, { name }] of logs.entries()) {
    const log = await readFile(join(dir, name));
    const damage = scanLog(log, false).damage;
    files++;
    bytes += log.length;
    if (damage === undefined) continue;
    // Every write is synced, so only the log still being appended to can hold a torn append.
    if (!damage.tornAppend || i !== logs.length - 1) throw corrupt(dir, name, describeDamage(damage));
    tornTail = { file: join(dir, name), offset: damage.offset, droppedBytes: log.length - damage.offset, reason: damage.reason };
  }
  return { files, bytes, tornTail };
}

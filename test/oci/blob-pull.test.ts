// Range requests and the resumable blob pull: a middle slice of a blob in the real docker-registry
// is exactly those bytes; a local server that cuts every answer after N bytes is survived by
// reopening from the byte reached (with the backoff taken on the injected clock), and given up on
// after the bound; a server that ignores Range still gives the slice; a 206 whose Content-Range is
// not what was asked is refused with its code. Starts a registry child process.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { systemClock, type Clock } from "../../src/base/clock.js";
import { isShoalError, type ShoalErrorCode } from "../../src/base/errors.js";
import { pullBlob, pullRange } from "../../src/oci/blob-pull.js";
import type { Descriptor } from "../../src/oci/manifest.js";
import { parseImageReference } from "../../src/oci/reference.js";
import { RegistryClient } from "../../src/oci/registry-client.js";
import { ensureContainerTools } from "../../scripts/lib/container-tools.js";
import { startRegistry, type LocalRegistry } from "../../scripts/lib/registry.js";

const BLOB = randomBytes(3 * 1024 * 1024 + 12345);
const DIGEST = `sha256:${createHash("sha256").update(BLOB).digest("hex")}`;
const DESCRIPTOR: Descriptor = { mediaType: "application/octet-stream", digest: DIGEST, size: BLOB.length };

let registry: LocalRegistry;

/** A monolithic blob upload (distribution spec: POST an upload, PUT its location with ?digest=). */
async function pushBlob(host: string, repository: string, bytes: Buffer, digest: string): Promise<void> {
  const started = await fetch(`http://${host}/v2/${repository}/blobs/uploads/`, { method: "POST" });
  assert.equal(started.status, 202, "the registry starts an upload");
  const location = new URL(started.headers.get("location")!, `http://${host}`);
  location.searchParams.set("digest", digest);
  const put = await fetch(location, { method: "PUT", body: new Uint8Array(bytes), headers: { "content-type": "application/octet-stream" } });
  assert.equal(put.status, 201, "the registry accepts the blob");
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

function rejectsWith(code: ShoalErrorCode, pattern: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isShoalError(err, code), `expected ${code}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  };
}

/** The system clock, with every sleep (the backoff) written down. */
function recordingClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  return {
    ...systemClock,
    sleeps,
    setTimeout(fn, ms) {
      sleeps.push(ms);
      return systemClock.setTimeout(fn, ms);
    },
    sleep(ms) {
      sleeps.push(ms);
      return systemClock.sleep(ms);
    },
  };
}

interface CuttingServer {
  host: string;
  /** Each request's Range header ("" when none). */
  ranges: string[];
  close(): Promise<void>;
}

/**
 * Serves BLOB at /v2/app/blobs/<digest>. The first `cuts` answers stop after `cutAfter` bytes of
 * their body and drop the connection. `ignoreRange` answers 200 with the whole blob regardless;
 * `contentRange` overrides the 206's Content-Range.
 */
async function cuttingServer(opts: { cuts: number; cutAfter: number; ignoreRange?: boolean; contentRange?: (first: number, last: number) => string }): Promise<CuttingServer> {
  const ranges: string[] = [];
  let answered = 0;
  const server = http.createServer((req, res) => {
    if (req.url !== `/v2/app/blobs/${DIGEST}`) {
      res.writeHead(404).end();
      return;
    }
    const range = req.headers.range ?? "";
    ranges.push(range);
    let body = BLOB;
    const m = /^bytes=(\d+)-(\d+)$/.exec(range);
    if (m !== null && opts.ignoreRange !== true) {
      const first = Number(m[1]);
      const last = Number(m[2]);
      body = BLOB.subarray(first, last + 1);
      res.writeHead(206, { "content-length": body.length, "content-range": opts.contentRange?.(first, last) ?? `bytes ${first}-${last}/${BLOB.length}` });
    } else {
      res.writeHead(200, { "content-length": body.length });
    }
    if (answered++ < opts.cuts) {
      res.write(body.subarray(0, opts.cutAfter), () => setImmediate(() => res.socket?.destroy()));
    } else {
      res.end(body);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    ranges,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

before(async () => {
  await ensureContainerTools();
  registry = await startRegistry();
  await pushBlob(registry.host, "slices", BLOB, DIGEST);
});

after(async () => {
  await registry?.stop();
});

test("a Range against the real docker-registry gives exactly the middle slice; the whole blob and an open tail too", async () => {
  const client = new RegistryClient({ idleTimeoutMs: 5000 });
  const ref = parseImageReference(`${registry.host}/slices:1`);
  const offset = 1024 * 1024 + 7;
  const length = 777_777;
  const slice = await collect(await client.openBlob(ref, DESCRIPTOR, { offset, length }));
  assert.equal(slice.length, length);
  assert.ok(slice.equals(BLOB.subarray(offset, offset + length)), "the slice is the blob's bytes at that offset");
  const tail = await collect(await client.openBlob(ref, DESCRIPTOR, { offset: BLOB.length - 10 }));
  assert.ok(tail.equals(BLOB.subarray(BLOB.length - 10)));
  assert.ok((await collect(await client.openBlob(ref, DESCRIPTOR))).equals(BLOB));
  const piece = await pullRange(client, ref, DESCRIPTOR, { offset: 0, length: 4096 }, { clock: systemClock });
  assert.ok(piece.equals(BLOB.subarray(0, 4096)));
});

test("a range outside the blob is INVALID_ARGUMENT before anything is sent; a descriptor with the wrong size is DIGEST_MISMATCH", async () => {
  const client = new RegistryClient({ idleTimeoutMs: 5000 });
  const ref = parseImageReference(`${registry.host}/slices:1`);
  await assert.rejects(client.openBlob(ref, DESCRIPTOR, { offset: BLOB.length - 5, length: 6 }), rejectsWith("INVALID_ARGUMENT", /does not fit a blob/));
  await assert.rejects(client.openBlob(ref, DESCRIPTOR, { offset: -1 }), rejectsWith("INVALID_ARGUMENT", /outside a blob/));
  // The registry's Content-Range says the blob's real size; a descriptor that disagrees is caught.
  await assert.rejects(client.openBlob(ref, { ...DESCRIPTOR, size: BLOB.length + 100 }, { offset: 10, length: 10 }), rejectsWith("DIGEST_MISMATCH", /says the blob is \d+ bytes, the manifest says/));
});

test("a pull whose connection is cut after N bytes, three times, reopens from the byte reached and yields the whole blob", async () => {
  const cutAfter = 300_000;
  const server = await cuttingServer({ cuts: 3, cutAfter });
  try {
    const clock = recordingClock();
    const retries: number[] = [];
    const got = await collect(
      pullBlob(new RegistryClient({ idleTimeoutMs: 5000 }), parseImageReference(`${server.host}/app:1`), DESCRIPTOR, {
        clock,
        firstBackoffMs: 5,
        maxRetries: 5,
        onRetry: (r) => retries.push(r.atByte),
      }),
    );
    assert.ok(got.equals(BLOB), "the resumed pull is the blob, each byte once");
    assert.deepEqual(server.ranges, ["", `bytes=${cutAfter}-${BLOB.length - 1}`, `bytes=${2 * cutAfter}-${BLOB.length - 1}`, `bytes=${3 * cutAfter}-${BLOB.length - 1}`]);
    assert.deepEqual(retries, [cutAfter, 2 * cutAfter, 3 * cutAfter]);
    assert.deepEqual(clock.sleeps, [5, 10, 20], "the backoff doubles, on the injected clock");
  } finally {
    await server.close();
  }
});

test("a pull that keeps breaking gives up after the bound with REGISTRY_UNAVAILABLE", async () => {
  const server = await cuttingServer({ cuts: Infinity, cutAfter: 1000 });
  try {
    await assert.rejects(
      collect(pullBlob(new RegistryClient({ idleTimeoutMs: 5000 }), parseImageReference(`${server.host}/app:1`), DESCRIPTOR, { clock: systemClock, firstBackoffMs: 1, maxRetries: 2 })),
      rejectsWith("REGISTRY_UNAVAILABLE", /gave up after 3 attempts with 3000 of \d+ bytes/),
    );
    assert.equal(server.ranges.length, 3, "the first request and two reopens");
  } finally {
    await server.close();
  }
});

test("a ranged pull from a server that ignores Range (200, whole blob) still yields just the slice, also after a cut", async () => {
  const server = await cuttingServer({ cuts: 1, cutAfter: 600_000, ignoreRange: true });
  try {
    const client = new RegistryClient({ idleTimeoutMs: 5000 });
    const ref = parseImageReference(`${server.host}/app:1`);
    const slice = await pullRange(client, ref, DESCRIPTOR, { offset: 500_000, length: 400_000 }, { clock: systemClock, firstBackoffMs: 1 });
    assert.ok(slice.equals(BLOB.subarray(500_000, 900_000)));
    assert.deepEqual(server.ranges, ["bytes=500000-899999", "bytes=600000-899999"]);
  } finally {
    await server.close();
  }
});

test("a 206 whose Content-Range is not the range asked for, or is missing, is refused with REGISTRY_UNAVAILABLE", async () => {
  for (const [contentRange, pattern] of [
    [(first: number, last: number) => `bytes ${first + 1}-${last + 1}/${BLOB.length}`, /sent bytes 11-20 when asked for 10-19/],
    [() => "bytes */garbage", /no usable Content-Range/],
  ] as const) {
    const server = await cuttingServer({ cuts: 0, cutAfter: 0, contentRange });
    try {
      const client = new RegistryClient({ idleTimeoutMs: 5000 });
      await assert.rejects(client.openBlob(parseImageReference(`${server.host}/app:1`), DESCRIPTOR, { offset: 10, length: 10 }), rejectsWith("REGISTRY_UNAVAILABLE", pattern));
    } finally {
      await server.close();
    }
  }
});

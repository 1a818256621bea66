// A blob download that survives a broken connection: when the body stops mid-way (the registry
// went away, a reset, an idle timeout), it asks again with a Range from the first byte it lacks,
// a bounded number of times with a doubling pause on the injected clock, so a long layer pull is
// not started over from zero by one dropped connection. Only transient failures are retried: a
// missing blob, a refusal or a digest mismatch are not going to change.
import type { Readable } from "node:stream";
import type { Clock } from "../base/clock.js";
import { isShoalError, ShoalError } from "../base/errors.js";
import type { Descriptor } from "./manifest.js";
import { formatImageReference, type ImageReference } from "./reference.js";
import type { BlobRange, RegistryClient } from "./registry-client.js";

export const DEFAULT_MAX_RETRIES = 5;
export const DEFAULT_FIRST_BACKOFF_MS = 250;
export const DEFAULT_MAX_BACKOFF_MS = 8_000;

export interface ResumablePullOptions {
  clock: Clock;
  /** Reopens allowed in one pull (not counting the first request); DEFAULT_MAX_RETRIES. */
  maxRetries?: number;
  /** The pause before the first reopen, doubled for each further one up to maxBackoffMs. */
  firstBackoffMs?: number;
  maxBackoffMs?: number;
  /** Stops the pull (between chunks and during a pause) with the signal's reason. */
  signal?: AbortSignal;
  /** Told of each reopen: for logs and tests (carries no credential). */
  onRetry?: (info: { attempt: number; atByte: number; backoffMs: number; error: ShoalError }) => void;
}

/** What opens a blob (a range of it): RegistryClient.openBlob, or anything shaped like it. */
export type BlobOpener = Pick<RegistryClient, "openBlob">;

/** Whether a failure of a request or a body may go away if asked again. */
export function isTransientPullError(err: unknown): boolean {
  if (isShoalError(err)) return err.code === "REGISTRY_UNAVAILABLE" || err.code === "TIMEOUT" || err.code === "UNAVAILABLE";
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ECONNRESET" || code === "EPIPE" || code === "ECONNREFUSED" || code === "ERR_STREAM_PREMATURE_CLOSE" || (err as Error | undefined)?.message === "aborted";
}

/**
 * The bytes of `blob` (or of `range` of it), in order, each byte once, reopening after transient
 * failures. Ends with REGISTRY_UNAVAILABLE once `maxRetries` reopens did not get it all; any
 * other error ends it at once. The caller still verifies the digest.
 */
export async function* pullBlob(client: BlobOpener, image: ImageReference, blob: Descriptor, opts: ResumablePullOptions, range?: BlobRange): AsyncGenerator<Buffer> {
  const what = `image ${formatImageReference(image)}: blob ${blob.digest}`;
  const start = range?.offset ?? 0;
  const length = range?.length ?? blob.size - start;
  const maxRetries = opts.maxRetries ?? DEFAULT_MAX_RETRIES;
  if (!Number.isSafeInteger(maxRetries) || maxRetries < 0) throw new ShoalError("INVALID_ARGUMENT", `maxRetries must be a non-negative integer, got ${maxRetries}`);
  let got = 0;
  let backoffMs = opts.firstBackoffMs ?? DEFAULT_FIRST_BACKOFF_MS;
  for (let attempt = 0; ; attempt++) {
    opts.signal?.throwIfAborted();
    let body: Readable | undefined;
    try {
      // The first request asks exactly what the caller asked; a reopen asks for the rest only.
      const rest: BlobRange | undefined = got === 0 && range === undefined ? undefined : { offset: start + got, length: length - got };
      body = await client.openBlob(image, blob, rest);
      for await (const chunk of body as AsyncIterable<Buffer>) {
        opts.signal?.throwIfAborted();
        got += chunk.length;
        yield chunk;
      }
      if (got === length) return;
      // A body that ends cleanly but short (a proxy that closed a chunked body) is a break too.
      throw new ShoalError("REGISTRY_UNAVAILABLE", `${what}: the registry's answer ended after ${got} of ${length} bytes`);
    } catch (err) {
      if (opts.signal?.aborted === true) throw opts.signal.reason;
      if (!isTransientPullError(err)) throw err;
      const error = err instanceof ShoalError ? err : new ShoalError("REGISTRY_UNAVAILABLE", `${what}: the registry connection broke (${(err as NodeJS.ErrnoException).code ?? "aborted"})`, { cause: err });
      if (attempt >= maxRetries) {
        throw new ShoalError("REGISTRY_UNAVAILABLE", `${what}: gave up after ${attempt + 1} attempts with ${got} of ${length} bytes: ${error.message}`, { cause: error });
      }
      opts.onRetry?.({ attempt: attempt + 1, atByte: start + got, backoffMs, error });
      await sleep(opts.clock, backoffMs, opts.signal);
      backoffMs = Math.min(backoffMs * 2, opts.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS);
    } finally {
      // Also when the consumer stops early (return() on this generator): no socket is left open.
      body?.destroy();
    }
  }
}

/** The whole of `range` as one buffer (a piece for the P2P seed), with the same retries. */
export async function pullRange(client: BlobOpener, image: ImageReference, blob: Descriptor, range: { offset: number; length: number }, opts: ResumablePullOptions): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of pullBlob(client, image, blob, opts, range)) {
    chunks.push(chunk);
    total += chunk.length;
  }
  return Buffer.concat(chunks, total);
}

function sleep(clock: Clock, ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return clock.sleep(ms);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      timer.cancel();
      reject(signal.reason);
    };
    const timer = clock.setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}

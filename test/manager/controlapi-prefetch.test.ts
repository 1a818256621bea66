// ListPrefetchJobs (src/manager/controlapi/prefetch.ts) over a real object store and the leader's
// job views: "" lists every job, a service ID or name lists that service's jobs, an unknown service
// is NOT_FOUND, no views (a manager without prefetch) is an empty list; and a view cannot carry an
// order's grant or the registry header a seed pulls with: no field of the view types is named like
// one, and a full view's JSON through the handler has no such key.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { prefetchHandlers } from "../../src/manager/controlapi/prefetch.js";
import { PrefetchJobViews } from "../../src/manager/prefetch/job-views.js";
import { ListPrefetchJobsResponse, PrefetchJobStatus, PrefetchNodeStatus } from "../../src/proto/shoal/v1/control.js";
import { ObjectStore } from "../../src/state/index.js";
import { commit, makeService } from "../state/fixtures.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const WEB = id("web");
const API = id("api");
const T = Date.parse("2026-12-01T12:00:00.000Z");
/** Names a field that could carry a credential: a grant, a header, a token, a password, a key. */
const CREDENTIAL_KEY = /grant|auth|token|header|password|secret|credential|bearer|key|cookie|signature/i;

function fullView(serviceId: string, n: number, ended: boolean): PrefetchJobStatus {
  return PrefetchJobStatus.fromPartial({
    jobId: `${serviceId}.${n}.${"ab".repeat(8)}`,
    serviceId,
    specVersion: BigInt(n),
    image: "127.0.0.1:5000/web:1",
    manifestDigest: `sha256:${"ab".repeat(32)}`,
    state: ended ? "done" : "running",
    sizeBytes: 4096n,
    startedAt: new Date(T + n * 1000),
    endedAt: ended ? new Date(T + n * 1000 + 500) : undefined,
    message: "m",
    nodes: [{ nodeId: id("n1"), zone: "a", role: "seed", state: "failed", bytesFromPeers: 1n, bytesFromRegistry: 2n, message: "PIECE_CORRUPT: x" }],
  });
}

function setup() {
  const store = new ObjectStore();
  commit(store, (tx) => {
    tx.createService(makeService("web", {}, WEB));
    tx.createService(makeService("api", {}, API));
  });
  const views = new PrefetchJobViews();
  views.set(fullView(WEB, 1, true));
  views.set(fullView(API, 2, false));
  views.set(fullView(WEB, 3, false));
  return { store, views, handlers: prefetchHandlers(store, views) };
}

test("every job with no service; one service's jobs by ID or by name; an unknown service is NOT_FOUND", async () => {
  const { handlers } = setup();
  const ids = async (service: string): Promise<string[]> => (await handlers.listPrefetchJobs({ service })).jobs.map((j) => j.jobId);
  const job = (serviceId: string, n: number): string => `${serviceId}.${n}.${"ab".repeat(8)}`;
  // Running jobs first (by start), then the ended ones.
  assert.deepEqual(await ids(""), [job(API, 2), job(WEB, 3), job(WEB, 1)]);
  const webJobs = [job(WEB, 3), job(WEB, 1)];
  assert.deepEqual(await ids(WEB), webJobs);
  assert.deepEqual(await ids("web"), webJobs);
  assert.deepEqual(await ids("api"), [job(API, 2)]);
  for (const unknown of ["nope", id("zzz"), "web0", WEB.slice(0, 10)]) {
    await assert.rejects(handlers.listPrefetchJobs({ service: unknown }), (err: unknown) => isShoalError(err, "NOT_FOUND") && err.message === `service ${unknown} does not exist`, unknown);
  }
});

test("a service with no job is an empty list; a manager without job views lists nothing but still refuses an unknown service", async () => {
  const { store, handlers } = setup();
  commit(store, (tx) => tx.createService(makeService("idle", {}, id("idle"))));
  assert.deepEqual(await handlers.listPrefetchJobs({ service: "idle" }), { jobs: [] });
  assert.deepEqual(await handlers.listPrefetchJobs({ service: id("idle") }), { jobs: [] });
  const none = prefetchHandlers(store, undefined);
  assert.deepEqual(await none.listPrefetchJobs({ service: "" }), { jobs: [] });
  assert.deepEqual(await none.listPrefetchJobs({ service: "idle" }), { jobs: [] });
  await assert.rejects(none.listPrefetchJobs({ service: "nope" }), (err: unknown) => isShoalError(err, "NOT_FOUND"));
});

test("no field of a job view can carry a grant or a registry header", async () => {
  // Every field of both view types (fromPartial({}) has each one, defaults included).
  const fields = [...Object.keys(PrefetchJobStatus.fromPartial({})), ...Object.keys(PrefetchNodeStatus.fromPartial({}))];
  assert.ok(fields.includes("jobId") && fields.includes("bytesFromRegistry"), "the field list is real");
  assert.deepEqual(fields.filter((f) => CREDENTIAL_KEY.test(f)), [], "no view field is named like a credential");
  // And what the handler sends, as JSON on the wire (proto names) and in the TS shape.
  const { handlers } = setup();
  const response = await handlers.listPrefetchJobs({ service: "" });
  const keys = (value: unknown): string[] =>
    value === null || typeof value !== "object" ? [] : Array.isArray(value) ? value.flatMap(keys) : Object.entries(value).flatMap(([k, v]) => [k, ...keys(v)]);
  const wire = ListPrefetchJobsResponse.toJSON(response);
  const wireKeys = keys(wire);
  assert.ok(wireKeys.includes("nodes") && wireKeys.includes("bytesFromPeers") && wireKeys.includes("endedAt"), "the JSON is of a full view");
  assert.deepEqual(wireKeys.filter((k) => CREDENTIAL_KEY.test(k)), []);
  assert.deepEqual(keys(JSON.parse(JSON.stringify(response, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)))).filter((k) => CREDENTIAL_KEY.test(k)), []);
  // A view given extra properties (a buggy loop passing an order through) is sent with the view's fields only.
  const views = new PrefetchJobViews();
  views.set(Object.assign(fullView(WEB, 9, false), { grants: [{ blob: "x", grant: "SIGNED" }], registryHeader: "Bearer t0ken" }) as PrefetchJobStatus);
  const { store } = setup();
  const leaked = ListPrefetchJobsResponse.encode(await prefetchHandlers(store, views).listPrefetchJobs({ service: "" })).finish();
  const decoded = ListPrefetchJobsResponse.toJSON(ListPrefetchJobsResponse.decode(leaked));
  assert.deepEqual(keys(decoded).filter((k) => CREDENTIAL_KEY.test(k)), []);
  assert.ok(!Buffer.from(leaked).toString("latin1").includes("t0ken") && !Buffer.from(leaked).toString("latin1").includes("SIGNED"), "the wire bytes carry neither");
});

// `registry login|ls|logout` through the real API of a one-manager daemon, against a real
// registry (Debian's docker-registry over TLS with htpasswd Basic auth): a login the registry
// refuses is refused and nothing is stored; bad input gets its own code; a stored login is used by
// the leader to resolve a private image; no read API, log line or file of the manager's data dir
// carries the password (the store is sealed at rest).
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ServiceSpec } from "../../src/proto/shoal/v1/objects.js";
import { startRegistry } from "../../scripts/lib/registry.js";
import { buildTestImage } from "../../scripts/lib/test-image.js";
import { filesContaining, waitFor } from "../e2e/cluster.js";
import { refusedWith, singleManager } from "./single-manager.js";

const PASSWORD = "reg-pass-5d1e8c0b77";
const WRONG = "not-the-pass-91fa3";

test("registry login: checked against the registry, stored without any read view of the password, used to resolve a private image", { timeout: 180_000 }, async (t) => {
  const user = { username: "carol", password: PASSWORD };
  const registry = await startRegistry({ htpasswd: [user], tls: true });
  t.after(() => registry.stop());
  const image = await buildTestImage({ registry: registry.host, name: "team/private", credentials: user });
  const logLines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) });
  const { client, dir } = await singleManager(t, "shoal-capi-registry-", { logger });
  const caPem = registry.caPem!;
  const login = (username: string, password: string, extra: { registry?: string; caPem?: string } = {}) =>
    client.registryLogin({ registry: extra.registry ?? registry.host, username, password: Buffer.from(password), caPem: extra.caPem ?? caPem });

  // Refused by the registry: nothing stored, and the message names the user, never the password.
  const refusal = await refusedWith(login("carol", WRONG), "UNAUTHENTICATED", /refused the credentials of user 'carol'/);
  assert.ok(!refusal.includes(WRONG));
  // Without its CA a loopback registry is asked in plain HTTP, which a TLS port refuses.
  await refusedWith(login("carol", PASSWORD, { caPem: "" }), "REGISTRY_UNAVAILABLE", /give its CA file/);
  assert.deepEqual(await client.listRegistries(), []);

  // Bad input, each with its code, before any network call.
  await refusedWith(login("carol", PASSWORD, { registry: "" }), "INVALID_ARGUMENT", /empty/);
  await refusedWith(login("carol", PASSWORD, { registry: `https://${registry.host}` }), "INVALID_ARGUMENT", /without a scheme or path/);
  await refusedWith(login("carol", PASSWORD, { registry: "bad_host:5000" }), "INVALID_ARGUMENT", /not a host name/);
  await refusedWith(login("carol", PASSWORD, { registry: "127.0.0.1:99999" }), "INVALID_ARGUMENT", /port/);
  await refusedWith(login("ca:rol", PASSWORD), "INVALID_ARGUMENT", /must not contain ':'/);
  await refusedWith(login("", PASSWORD), "INVALID_ARGUMENT", /without a username/);
  await refusedWith(login("carol", ""), "INVALID_ARGUMENT", /password is empty/);
  await refusedWith(login("carol", "two\nlines"), "INVALID_ARGUMENT", /one line/);
  await refusedWith(login("carol", "x".repeat(17 * 1024)), "INVALID_ARGUMENT", /longer than/);
  await refusedWith(login("carol", PASSWORD, { caPem: "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n" }), "PEM_INVALID");
  await refusedWith(login("", "", { caPem: "" }), "INVALID_ARGUMENT", /nothing to store/);

  // The right login: stored; every read view shows the user and that a CA is held, never the password.
  const stored = await login("carol", PASSWORD);
  assert.equal(stored.registry, registry.host);
  assert.equal(stored.username, "carol");
  assert.equal(stored.password.length, 0);
  const listed = await client.listRegistries();
  assert.equal(listed.length, 1);
  assert.equal(listed[0]!.password.length, 0);
  assert.equal(listed[0]!.caPem, caPem);
  const cluster = await client.getCluster();
  assert.ok(cluster.registries.every((r) => r.password.length === 0));
  // A second login to the same registry replaces the first.
  await login("carol", PASSWORD);
  assert.equal((await client.listRegistries()).length, 1);

  // The leader resolves the private image's tag with it: the service's task carries the digest.
  const service = await client.createService({ spec: ServiceSpec.fromPartial({ name: "private", replicas: 1, container: { image: image.reference, command: [] } }) });
  const digest = await waitFor(
    "the task of the private image to carry its digest",
    async () => (await client.listTasks({ serviceId: service.id, nodeId: "" })).find((task) => task.spec?.imageDigest !== "")?.spec?.imageDigest,
    60_000,
  );
  assert.equal(digest, image.digest);
  await client.removeService(service.id);

  await client.registryLogout(registry.host.toUpperCase());
  assert.deepEqual(await client.listRegistries(), []);
  await refusedWith(client.registryLogout(registry.host), "NOT_FOUND", /no login for registry/);

  // The password is in no log line and, the store being sealed, in no file of the manager's data dir.
  const needle = Buffer.from(PASSWORD);
  assert.ok(!logLines.join("").includes(PASSWORD), "a log line carries the registry password");
  assert.ok(logLines.some((l) => l.includes("registry login stored")), "the login is logged (without the password)");
  assert.deepEqual(filesContaining(dir, needle), []);
  assert.deepEqual(filesContaining(dir, Buffer.from(Buffer.from(`carol:${PASSWORD}`).toString("base64"))), []);
});

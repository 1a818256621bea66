// Image references, the transport rule (plain HTTP only on loopback) and challenge parsing:
// pure input handling, no registry needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { parseChallenge } from "../../src/oci/auth.js";
import { checkTransport, isLoopbackHost } from "../../src/oci/http.js";
import { formatImageReference, parseImageReference } from "../../src/oci/reference.js";
import { RegistryClient } from "../../src/oci/registry-client.js";

const DIGEST = `sha256:${"ab".repeat(32)}`;

test("references with a registry host parse into registry, repository, tag and digest", () => {
  assert.deepEqual(parseImageReference("127.0.0.1:5000/app:1"), { registry: "127.0.0.1:5000", repository: "app", tag: "1" });
  assert.deepEqual(parseImageReference("registry.example.com/team/app"), { registry: "registry.example.com", repository: "team/app", tag: "latest" });
  assert.deepEqual(parseImageReference(`localhost:5000/a/b-c__d.e@${DIGEST}`), { registry: "localhost:5000", repository: "a/b-c__d.e", digest: DIGEST });
  assert.deepEqual(parseImageReference(`reg.local/app:v1.2@${DIGEST}`), { registry: "reg.local", repository: "app", tag: "v1.2", digest: DIGEST });
  assert.deepEqual(parseImageReference("[::1]:5000/app:x"), { registry: "[::1]:5000", repository: "app", tag: "x" });
  assert.equal(formatImageReference(parseImageReference(`reg.local/app:v1@${DIGEST}`)), `reg.local/app:v1@${DIGEST}`);
});

test("a reference without a registry host, or malformed, is INVALID_ARGUMENT saying why", () => {
  const cases: Array<[string, RegExp]> = [
    ["busybox", /names no registry host/],
    ["library/busybox:1", /names no registry host/],
    ["127.0.0.1:5000/App:1", /repository component 'App'/],
    ["127.0.0.1:5000/app:-bad", /tag '-bad'/],
    ["127.0.0.1:5000/app@sha256:1234", /not sha256/],
    ["127.0.0.1:5000/app@md5:" + "a".repeat(32), /not sha256/],
    ["127.0.0.1:99999/app", /port '99999'/],
    ["127.0.0.1:5000/", /repository name is empty/],
    ["127.0.0.1:5000/a b", /white space/],
    ["", /empty/],
  ];
  for (const [ref, message] of cases) {
    assert.throws(() => parseImageReference(ref), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && message.test((err as Error).message), ref);
  }
});

test("plain HTTP is allowed only to loopback hosts", async () => {
  assert.ok(isLoopbackHost("127.0.0.1") && isLoopbackHost("127.8.9.1") && isLoopbackHost("localhost") && isLoopbackHost("[::1]"));
  assert.ok(!isLoopbackHost("10.0.0.1") && !isLoopbackHost("registry.example.com") && !isLoopbackHost("127.0.0.1.nip.io"));
  assert.doesNotThrow(() => checkTransport(new URL("http://127.0.0.1:5000/v2/"), "registry x"));
  assert.doesNotThrow(() => checkTransport(new URL("https://10.0.0.1/v2/"), "registry x"));
  assert.throws(() => checkTransport(new URL("http://10.0.0.1:5000/v2/"), "registry 10.0.0.1:5000"), (err: unknown) => isShoalError(err, "INVALID_ARGUMENT") && /refusing plain HTTP/.test((err as Error).message));
  // The client never sends a non-loopback request over plain HTTP: it picks HTTPS (which fails
  // here: nothing listens), and a token realm over plain HTTP off this machine is refused.
  const client = new RegistryClient({ idleTimeoutMs: 2000 });
  await assert.rejects(client.ping("192.0.2.1:5000"), (err: unknown) => isShoalError(err, "REGISTRY_UNAVAILABLE"));
});

test("WWW-Authenticate challenges parse (Bearer with quoted params, Basic)", () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull"'), {
    scheme: "bearer",
    params: { realm: "https://auth.example/token", service: "registry.example", scope: "repository:team/app:pull" },
  });
  assert.deepEqual(parseChallenge('Basic realm="shoal"'), { scheme: "basic", params: { realm: "shoal" } });
  assert.deepEqual(parseChallenge('bearer realm="a\\"b", service=svc'), { scheme: "bearer", params: { realm: 'a"b', service: "svc" } });
  assert.equal(parseChallenge("Negotiate abc"), undefined);
  assert.equal(parseChallenge(undefined), undefined);
});

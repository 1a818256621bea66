// `service create` / `service update --with-registry-auth`, against a fake daemon, with a Docker
// config in a temp DOCKER_CONFIG: the login for the image's registry ("auth" or username/password,
// under the exact key or a URL-style one) reaches RegistryLogin before the service is written, the
// registry's CA the managers hold is kept; no entry, no file, a credential helper, an identity token
// or a malformed file is refused with its own code and nothing is asked or written; a login the
// registry refuses stops the create. The password (and its base64) appears in no output.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { ShoalError } from "../../src/base/errors.js";
import { authsKeyHost, dockerConfigPath } from "../../src/cli/docker-config.js";
import { runCli } from "../../src/cli/program.js";
import { FakeDaemon } from "./fake-daemon.js";

const id = (prefix: string): string => prefix.padEnd(25, "0");
const REGISTRY = "127.0.0.1:5000";
const IMAGE = `${REGISTRY}/team/web:1`;
const PASSWORD = "pa55:w0rd with spaces";
const AUTH = Buffer.from(`alice:${PASSWORD}`).toString("base64");
const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

let fake: FakeDaemon;
let dir: string;
before(async () => {
  fake = await FakeDaemon.start();
  dir = mkdtempSync(join(tmpdir(), "shoal-docker-config-"));
});
after(async () => {
  await fake.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A new DOCKER_CONFIG directory holding `config` (a string is written as is). */
function dockerConfig(config: unknown): string {
  const path = mkdtempSync(join(dir, "cfg-"));
  writeFileSync(join(path, "config.json"), typeof config === "string" ? config : JSON.stringify(config), { mode: 0o600 });
  return path;
}

async function shoal(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(["--socket", fake.socketPath, ...args], {
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
    stdin: Readable.from([]),
    env,
  });
  return { code, stdout, stderr };
}

const svc = { id: id("web"), meta: { version: 3n }, specVersion: 1n, spec: { name: "web", replicas: 1, container: { image: IMAGE } } };
const daemonScript = (extra: Record<string, (req: any, i: number) => object | ShoalError> = {}) => ({
  listRegistries: () => ({ registries: [] }),
  registryLogin: (req: any) => ({ registry: { registry: req.registry, username: req.username } }),
  createService: () => ({ service: svc }),
  listServices: () => ({ services: [svc] }),
  updateService: (req: any) => ({ service: { ...svc, spec: req.spec, specVersion: 2n } }),
  ...extra,
});

function assertNoSecret(r: { stdout: string; stderr: string }): void {
  for (const secret of [PASSWORD, AUTH, "pa55"]) {
    assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), `no output carries ${JSON.stringify(secret)}: ${JSON.stringify(r)}`);
  }
}

const CREATE = ["service", "create", "--name", "web", "--image", IMAGE, "--with-registry-auth", "--detach"];

test("the auths entry's \"auth\" goes to RegistryLogin before CreateService; the ID stays first on stdout", async () => {
  fake.reset(daemonScript());
  const r = await shoal(CREATE, { DOCKER_CONFIG: dockerConfig({ auths: { [REGISTRY]: { auth: AUTH }, "other:1": { auth: "eDp5" } } }) });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${id("web")}\n`);
  assert.equal(r.stderr, `Login to ${REGISTRY} as alice stored on the managers.\n`);
  assert.deepEqual(
    fake.calls.map((c) => c.method),
    ["listRegistries", "registryLogin", "createService"],
    "the login is stored (and checked by the registry) before the service is written",
  );
  const [login] = fake.callsTo("registryLogin");
  assert.equal(login.registry, REGISTRY);
  assert.equal(login.username, "alice");
  assert.equal(Buffer.from(login.password).toString("utf8"), PASSWORD, "split at the first ':' only");
  assert.equal(login.caPem, "");
  assertNoSecret(r);
});

test("username/password fields under a URL-style key; the CA the managers hold for the registry is kept", async () => {
  fake.reset(daemonScript({ listRegistries: () => ({ registries: [{ registry: REGISTRY, username: "old", caPem: CA }, { registry: "x:1", caPem: "other" }] }) }));
  const r = await shoal(CREATE, { DOCKER_CONFIG: dockerConfig({ auths: { [`https://${REGISTRY}/v1/`]: { username: "bob", password: PASSWORD } } }) });
  assert.equal(r.code, 0, r.stderr);
  const [login] = fake.callsTo("registryLogin");
  assert.deepEqual({ ...login, password: Buffer.from(login.password).toString("utf8") }, { registry: REGISTRY, username: "bob", password: PASSWORD, caPem: CA });
  assertNoSecret(r);
  assert.equal(authsKeyHost("https://Registry.Example:443/v2/"), "registry.example:443");
  assert.equal(authsKeyHost("127.0.0.1:5000"), "127.0.0.1:5000");
  assert.equal(dockerConfigPath({ HOME: "/home/op" }), "/home/op/.docker/config.json");
  assert.equal(dockerConfigPath({ HOME: "/home/op", DOCKER_CONFIG: "/etc/dc" }), "/etc/dc/config.json");
});

test("no entry for the registry, or no config at all: exit 5 naming the registry, nothing asked or written", async () => {
  const envs: Record<string, string>[] = [{ DOCKER_CONFIG: dockerConfig({ auths: { "127.0.0.1:5001": { auth: AUTH } } }) }, { DOCKER_CONFIG: join(dir, "nowhere") }, { HOME: join(dir, "no-home") }];
  for (const env of envs) {
    fake.reset(daemonScript());
    const r = await shoal(CREATE, env);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /^Error: --with-registry-auth: .*(has no login for registry 127\.0\.0\.1:5000|there is no Docker config at \S+config\.json).*`docker login 127\.0\.0\.1:5000`.*`shoal registry login 127\.0\.0\.1:5000 --username USER --password-stdin`\n$/);
    assert.equal(r.stdout, "");
    assert.deepEqual(fake.calls, [], "no call: nothing created");
    assertNoSecret(r);
  }
});

test("a login kept by a credential helper (credsStore, credHelpers) or an identity token: exit 6 naming the registry and the helper", async () => {
  const cases: [unknown, RegExp][] = [
    [{ auths: { [REGISTRY]: {} }, credsStore: "desktop" }, /keeps the login for 127\.0\.0\.1:5000 in a credential helper \(docker-credential-desktop\), which shoal does not run/],
    [{ credsStore: "pass" }, /docker-credential-pass/],
    // As docker: a helper for this registry wins over an entry in the file.
    [{ auths: { [REGISTRY]: { auth: AUTH } }, credHelpers: { [REGISTRY]: "ecr-login" } }, /docker-credential-ecr-login/],
    [{ auths: { [REGISTRY]: { identitytoken: "tok" } } }, /the login for 127\.0\.0\.1:5000 in \S+ is an identity token, which shoal cannot use/],
  ];
  for (const [config, pattern] of cases) {
    fake.reset(daemonScript());
    const r = await shoal(CREATE, { DOCKER_CONFIG: dockerConfig(config) });
    assert.equal(r.code, 6, `${JSON.stringify(config)}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.match(r.stderr, /shoal registry login 127\.0\.0\.1:5000/);
    assert.deepEqual(fake.calls, []);
    assertNoSecret(r);
  }
  // A credsStore does not hide an inline login for the registry (docker login before the store was set up).
  fake.reset(daemonScript());
  const inline = await shoal(CREATE, { DOCKER_CONFIG: dockerConfig({ auths: { [REGISTRY]: { auth: AUTH } }, credsStore: "desktop" }) });
  assert.equal(inline.code, 0, inline.stderr);
});

test("a malformed config or auth: exit 2, and the file's text (the password) is not quoted", async () => {
  const cases: [string, RegExp][] = [
    [`{"auths": {"${REGISTRY}": {"auth": "${AUTH}", "password": "${PASSWORD}"`, /is not valid JSON/],
    // V8's parse error would quote the start of the text.
    [`${PASSWORD}\n`, /is not valid JSON/],
    [`["${PASSWORD}"]`, /is not a Docker config/],
    [JSON.stringify({ auths: { [REGISTRY]: { auth: Buffer.from(PASSWORD.replace(":", "")).toString("base64") } } }), /is not base64 of USER:PASSWORD/],
    [JSON.stringify({ auths: { [REGISTRY]: { auth: `${PASSWORD}!` } } }), /is not base64 of USER:PASSWORD/],
  ];
  for (const [text, pattern] of cases) {
    fake.reset(daemonScript());
    const r = await shoal(CREATE, { DOCKER_CONFIG: dockerConfig(text) });
    assert.equal(r.code, 2, `${text}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.deepEqual(fake.calls, []);
    assertNoSecret(r);
  }
});

test("a login the registry refuses stops the create; a process service cannot take --with-registry-auth", async () => {
  fake.reset(daemonScript({ registryLogin: () => new ShoalError("UNAUTHENTICATED", `registry ${REGISTRY} refused the login`) }));
  const refused = await shoal(CREATE, { DOCKER_CONFIG: dockerConfig({ auths: { [REGISTRY]: { auth: AUTH } } }) });
  assert.equal(refused.code, 4, refused.stderr);
  assert.match(refused.stderr, /refused the login/);
  assert.deepEqual(fake.callsTo("createService"), [], "nothing created");
  assertNoSecret(refused);

  fake.reset(daemonScript());
  const processTask = await shoal(["service", "create", "--name", "p", "--with-registry-auth", "--", "sleep", "1"], { DOCKER_CONFIG: dockerConfig({ auths: { [REGISTRY]: { auth: AUTH } } }) });
  assert.equal(processTask.code, 2, processTask.stderr);
  assert.match(processTask.stderr, /--with-registry-auth needs an image/);
  assert.deepEqual(fake.calls, []);
});

test("service update --with-registry-auth: the new image's registry, else the service's, before UpdateService", async () => {
  const env = { DOCKER_CONFIG: dockerConfig({ auths: { [REGISTRY]: { auth: AUTH }, "127.0.0.1:6000": { username: "carol", password: PASSWORD } } }) };
  fake.reset(daemonScript());
  const same = await shoal(["service", "update", "web", "--env-add", "A=1", "--with-registry-auth", "-d"], env);
  assert.equal(same.code, 0, same.stderr);
  assert.equal(same.stdout, `${id("web")}\n`);
  assert.deepEqual(fake.callsTo("registryLogin").map((l) => [l.registry, l.username]), [[REGISTRY, "alice"]]);
  const order = fake.calls.map((c) => c.method);
  assert.ok(order.indexOf("registryLogin") < order.indexOf("updateService"), order.join(","));
  assertNoSecret(same);

  fake.reset(daemonScript());
  const moved = await shoal(["service", "update", "web", "--image", "127.0.0.1:6000/web:2", "--with-registry-auth", "-d"], env);
  assert.equal(moved.code, 0, moved.stderr);
  assert.deepEqual(fake.callsTo("registryLogin").map((l) => [l.registry, l.username, Buffer.from(l.password).toString()]), [["127.0.0.1:6000", "carol", PASSWORD]]);
  assert.equal(fake.callsTo("updateService")[0].spec.container.image, "127.0.0.1:6000/web:2");
  assertNoSecret(moved);

  fake.reset(daemonScript());
  const missing = await shoal(["service", "update", "web", "--image", "127.0.0.1:7000/web:2", "--with-registry-auth", "-d"], env);
  assert.equal(missing.code, 5, missing.stderr);
  assert.deepEqual(fake.callsTo("updateService"), [], "nothing updated");
});

// A real OCI registry for tests, benchmarks and the demo: Debian's docker-registry (CNCF
// distribution 2.8) on 127.0.0.1:<free port> with its data in a temp dir, optionally behind
// htpasswd Basic auth or token (Bearer) auth; and the token server that token auth needs, which
// signs ES256 JWTs the registry verifies against the server's certificate.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createPrivateKey, randomBytes, sign, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ensureContainerTools, findExecutable } from "./container-tools.js";
import { sleep } from "./wait.js";

const execFileAsync = promisify(execFile);

export interface RegistryUser {
  username: string;
  password: string;
}

export interface StartRegistryOptions {
  /** Reuse a data directory (a restart with other auth keeps the images); default: a new temp dir. */
  dataDir?: string;
  /** htpasswd Basic auth with these users. */
  htpasswd?: RegistryUser[];
  /** Token auth against this token server. */
  token?: TokenServer;
  /** Fixed port (a restart on the same address); default: a free one. */
  port?: number;
  /** Serve HTTPS with a fresh self-signed certificate for 127.0.0.1 (its PEM is `caPem`). */
  tls?: boolean;
}

export interface LocalRegistry {
  /** `127.0.0.1:PORT`: the registry part of image references. */
  readonly host: string;
  readonly dataDir: string;
  /** Its config (and TLS/htpasswd files): removed by stop(). */
  readonly workDir: string;
  readonly port: number;
  /** With `tls`: the certificate to trust (it is its own CA). */
  readonly caPem?: string;
  /** SIGTERM, wait for exit; removes its temp files, and its data dir (when it made it) unless `keepData`. */
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<LocalRegistry> {
  await ensureContainerTools();
  const workDir = await mkdtemp(join(tmpdir(), "shoal-registry-"));
  const ownsData = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), "shoal-registry-data-")));
  const port = opts.port ?? (await freePort());
  const lines = ["version: 0.1", "log: { level: warn }", `storage: { filesystem: { rootdirectory: ${JSON.stringify(dataDir)} }, delete: { enabled: true } }`, `http: { addr: 127.0.0.1:${port} }`];
  if (opts.htpasswd !== undefined) {
    const path = join(workDir, "htpasswd");
    await writeFile(path, (await Promise.all(opts.htpasswd.map(async (u) => `${u.username}:${await bcrypt(u.password)}`))).join("\n") + "\n", { mode: 0o600 });
    lines.push(`auth: { htpasswd: { realm: shoal, path: ${JSON.stringify(path)} } }`);
  } else if (opts.token !== undefined) {
    const t = opts.token;
    lines.push(`auth: { token: { realm: ${JSON.stringify(t.realm)}, service: ${JSON.stringify(t.service)}, issuer: ${JSON.stringify(t.issuer)}, rootcertbundle: ${JSON.stringify(t.certPath)} } }`);
  }
  let caPem: string | undefined;
  if (opts.tls === true) {
    const keyPath = join(workDir, "tls.key");
    const certPath = join(workDir, "tls.crt");
    await execFileAsync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]);
    caPem = await readFile(certPath, "utf8");
    lines[3] = `http: { addr: 127.0.0.1:${port}, tls: { certificate: ${JSON.stringify(certPath)}, key: ${JSON.stringify(keyPath)} } }`;
  }
  const configPath = join(workDir, "config.yml");
  await writeFile(configPath, lines.join("\n") + "\n");
  const child = spawn(findExecutable("docker-registry") ?? "docker-registry", ["serve", configPath], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // A caller that exits without stop() (Ctrl-C, a failed assertion) must not leave the registry running.
  const killOnExit = (): void => void child.kill("SIGKILL");
  process.once("exit", killOnExit);
  void exited.then(() => process.off("exit", killOnExit));
  const host = `127.0.0.1:${port}`;
  try {
    await waitForV2(host, opts.tls === true, child, () => stderr);
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    await rm(workDir, { recursive: true, force: true });
    if (ownsData) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  let stopped = false;
  return {
    host,
    dataDir,
    workDir,
    port,
    ...(caPem !== undefined ? { caPem } : {}),
    async stop(stopOpts = {}) {
      if (!stopped) {
        stopped = true;
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(killer);
      }
      await rm(workDir, { recursive: true, force: true });
      if (ownsData && stopOpts.keepData !== true) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function waitForV2(host: string, tls: boolean, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    const status = await new Promise<number>((resolve) => {
      // Readiness only: the certificate is checked by the clients under test, not here.
      const req = (tls ? https : http).get(`${tls ? "https" : "http"}://${host}/v2/`, { rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", () => resolve(0));
    });
    // 401 = up, behind auth.
    if (status === 200 || status === 401) return;
    if (Date.now() > deadline) throw new Error(`docker-registry on ${host} did not answer GET /v2/ within 15 s: ${stderr()}`);
    await sleep(50);
  }
}

/** A bcrypt hash for htpasswd (the registry accepts only bcrypt); python3's crypt makes it. */
async function bcrypt(password: string): Promise<string> {
  const script = "import crypt,sys; print(crypt.crypt(sys.stdin.readline().rstrip('\\n'), crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))";
  return new Promise((resolve, reject) => {
    const child = execFile("python3", ["-W", "ignore", "-c", script], (err, stdout) => {
      if (err !== null) reject(new Error(`making a bcrypt hash with python3 failed (install python3): ${err.message}`));
      else if (!stdout.startsWith("$2")) reject(new Error("python3's crypt did not make a bcrypt hash"));
      else resolve(stdout.trim());
    });
    child.stdin!.end(password + "\n");
  });
}

export interface TokenServer {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** The PEM certificate the registry trusts (`auth.token.rootcertbundle`). */
  readonly certPath: string;
  /** Every token request, as the registry's client sent it (no passwords). */
  readonly requests: Array<{ account: string | undefined; scopes: string[]; granted: boolean }>;
  stop(): Promise<void>;
}

export interface StartTokenServerOptions {
  users: RegistryUser[];
  /** Grant pull tokens without credentials. */
  anonymousPull?: boolean;
}

/**
 * A token server as the distribution spec's token auth describes: Basic credentials in, a JWT
 * signed with ES256 out, its certificate in the header's x5c, granting the scopes asked for.
 */
export async function startTokenServer(opts: StartTokenServerOptions): Promise<TokenServer> {
  const workDir = await mkdtemp(join(tmpdir(), "shoal-token-"));
  const keyPath = join(workDir, "token.key");
  const certPath = join(workDir, "token.crt");
  await execFileAsync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=shoal-test-token-issuer"]);
  const key = createPrivateKey(await readFile(keyPath));
  const certDer = new X509Certificate(await readFile(certPath)).raw;
  const service = "shoal-test-registry";
  const issuer = "shoal-test-issuer";
  const requests: TokenServer["requests"] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const scopes = url.searchParams.getAll("scope");
    let account: string | undefined;
    const auth = req.headers.authorization;
    if (auth?.startsWith("Basic ")) {
      const [user, ...rest] = Buffer.from(auth.slice(6), "base64").toString("utf8").split(":");
      const ok = opts.users.some((u) => u.username === user && u.password === rest.join(":"));
      if (!ok) {
        requests.push({ account: user, scopes, granted: false });
        res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED" }] }));
        return;
      }
      account = user;
    } else if (opts.anonymousPull !== true) {
      requests.push({ account: undefined, scopes, granted: false });
      res.writeHead(401).end();
      return;
    }
    const access = scopes.flatMap((scope) => {
      const [type, ...rest] = scope.split(":");
      const actions = (rest.pop() ?? "").split(",").filter((a) => account !== undefined || a === "pull");
      return type === "repository" ? [{ type, name: rest.join(":"), actions }] : [];
    });
    requests.push({ account, scopes, granted: true });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "ES256", typ: "JWT", x5c: [certDer.toString("base64")] };
    const claims = { iss: issuer, sub: account ?? "", aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(12).toString("hex"), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign("sha256", Buffer.from(signingInput), { key, dsaEncoding: "ieee-p1363" });
    const token = `${signingInput}.${signature.toString("base64url")}`;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date(now * 1000).toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certPath,
    requests,
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await rm(workDir, { recursive: true, force: true });
    },
  };
}

function b64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}

/** A port the kernel had free on 127.0.0.1 (process-cluster.ts has the same; importing it would load the whole CLI). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

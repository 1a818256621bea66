// A CFSSL-compatible signer for the external CA tests: an HTTPS server on 127.0.0.1 (verified by
// the managers with cacert=) whose /api/v1/cfssl/sign signs with a root key the test holds,
// faithfully or wrongly (another CN, OU, key or zone) as `state.mode` says, and records what it was
// asked and the serials it issued. `stop` and `start` take it down and back on the same port.
import type { TestContext } from "node:test";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { join } from "node:path";
import { newId } from "../../src/base/ids.js";
import { systemClock } from "../../src/base/clock.js";
import { createNodeKeyAndCsr, parseSpiffeUri, type NodeRole, type RootCA } from "../../src/ca/index.js";
import { freePort } from "../e2e/cluster.js";

const HOUR_MS = 3600_000;

/** A TLS certificate for 127.0.0.1 (self-signed: it is also the cacert= the managers verify with). */
export function tlsIdentity(dir: string): { certFile: string; keyFile: string; certPem: string; keyPem: string } {
  const keyFile = join(dir, "tls-key.pem");
  const certFile = join(dir, "tls.pem");
  execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile]);
  execFileSync("openssl", ["req", "-x509", "-new", "-key", keyFile, "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2", "-out", certFile], { stdio: "ignore" });
  return { certFile, keyFile, certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8") };
}

export type FakeMode = "good" | "other-cn" | "other-ou" | "other-key" | "other-zone" | "error";

/** A CFSSL sign endpoint that signs with `root`, faithfully or wrongly as `mode` says. */
export async function fakeCfssl(t: TestContext, root: RootCA, tls: { certPem: string; keyPem: string }) {
  const state = { mode: "good" as FakeMode, validityMs: 2160 * HOUR_MS, requests: [] as { hosts: string[]; subject: unknown }[], serials: [] as string[] };
  const port = await freePort();
  let server: Server | undefined;
  const start = () =>
    new Promise<void>((resolve) => {
      server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          void (async () => {
            const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
              certificate_request: string;
              hosts: string[];
              subject: { CN: string; names: { O: string; OU: string }[] };
            };
            state.requests.push({ hosts: body.hosts, subject: body.subject });
            if (req.url !== "/api/v1/cfssl/sign" || state.mode === "error") {
              res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ success: false, result: null, errors: [{ code: 1003, message: "Invalid request" }], messages: [] }));
              return;
            }
            const identity = parseSpiffeUri(body.hosts[2]!)!;
            const flipped: NodeRole = body.subject.names[0]!.OU === "swarm-worker" ? "swarm-manager" : "swarm-worker";
            const issued = root.issueNodeCertificate({
              csrPem: state.mode === "other-key" ? (await createNodeKeyAndCsr()).csrPem : body.certificate_request,
              nodeId: state.mode === "other-cn" ? newId() : body.subject.CN,
              role: state.mode === "other-ou" ? flipped : (body.subject.names[0]!.OU as NodeRole),
              clusterId: body.subject.names[0]!.O,
              zone: state.mode === "other-zone" ? "elsewhere" : identity.zone,
              validityMs: state.validityMs,
              clock: systemClock,
            });
            state.serials.push(issued.serial);
            res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ success: true, result: { certificate: issued.certPem }, errors: [], messages: [] }));
          })();
        });
      });
      server.listen(port, "127.0.0.1", resolve);
    });
  const stop = () => new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  await start();
  t.after(stop);
  return { state, url: `https://127.0.0.1:${port}`, start, stop };
}


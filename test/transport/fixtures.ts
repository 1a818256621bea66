// Test PKI made with the real openssl CLI (independent of src/ca's own issuer): an EC P-256 root CA
// run as an `openssl ca` database, node certificates with Shoal's subject and SANs, expired ones via
// -startdate/-enddate, revocation and CRLs via -revoke/-gencrl. Plus a verifier on src/ca.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes, X509Certificate } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { systemClock, type Clock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import { caPeerVerifier, type NodeRole, type PeerVerifier } from "../../src/transport/identity.js";
import { RevocationState } from "../../src/transport/revocation.js";
import { createSecureServer, type SecureServer, type SecureServerOptions } from "../../src/transport/server.js";

export interface NodeCert {
  certPem: string;
  keyPem: string;
  nodeId: string;
  clusterId: string;
  role: NodeRole;
  /** Upper-case hex as Node prints it. */
  serial: string;
  certFile: string;
}

function openssl(args: string[], cwd?: string): string {
  return execFileSync("openssl", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export class TestCa {
  readonly dir: string;
  readonly rootCaPem: string;
  private counter = 0;

  constructor(readonly baseDir: string, name: string) {
    this.dir = path.join(baseDir, name);
    mkdirSync(path.join(this.dir, "newcerts"), { recursive: true });
    writeFileSync(path.join(this.dir, "index.txt"), "");
    writeFileSync(path.join(this.dir, "serial"), randomSerialHex() + "\n");
    writeFileSync(path.join(this.dir, "crlnumber"), "01\n");
    writeFileSync(path.join(this.dir, "ca.cnf"), caConfig(this.dir));
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ca.key"], this.dir);
    openssl(
      ["req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "7300", "-subj", "/CN=shoal-root-ca", "-config", "ca.cnf", "-extensions", "v3_root"],
      this.dir,
    );
    this.rootCaPem = readFileSync(path.join(this.dir, "ca.crt"), "utf8");
  }

  issue(opts: { role: NodeRole; clusterId: string; nodeId?: string; zone?: string; expired?: boolean }): NodeCert {
    const nodeId = opts.nodeId ?? newId();
    const zone = opts.zone ?? "default";
    const stem = `node${++this.counter}`;
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${stem}.key`], this.dir);
    openssl(["req", "-new", "-key", `${stem}.key`, "-out", `${stem}.csr`, "-subj", `/O=${opts.clusterId}/OU=${opts.role}/CN=${nodeId}`], this.dir);
    writeFileSync(
      path.join(this.dir, `${stem}.ext`),
      [
        "[node]",
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature",
        "extendedKeyUsage = serverAuth, clientAuth",
        `subjectAltName = DNS:${opts.role}, DNS:${nodeId}, URI:spiffe://${opts.clusterId}/zone/${zone}/${opts.role}/${nodeId}`,
        "",
      ].join("\n"),
    );
    const dates = opts.expired ? ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"] : ["-days", "90"];
    openssl(
      ["ca", "-config", "ca.cnf", "-batch", "-notext", "-preserveDN", "-in", `${stem}.csr`, "-out", `${stem}.crt`, "-extfile", `${stem}.ext`, "-extensions", "node", ...dates],
      this.dir,
    );
    const certPem = readFileSync(path.join(this.dir, `${stem}.crt`), "utf8");
    return {
      certPem,
      keyPem: readFileSync(path.join(this.dir, `${stem}.key`), "utf8"),
      nodeId,
      clusterId: opts.clusterId,
      role: opts.role,
      serial: new X509Certificate(certPem).serialNumber,
      certFile: path.join(this.dir, `${stem}.crt`),
    };
  }

  revoke(cert: NodeCert): void {
    openssl(["ca", "-config", "ca.cnf", "-revoke", cert.certFile], this.dir);
  }

  /** A CRL (PEM, "X509 CRL") listing every certificate revoked so far. */
  crlPem(): string {
    openssl(["ca", "-config", "ca.cnf", "-gencrl", "-crldays", "7", "-out", "crl.pem"], this.dir);
    return readFileSync(path.join(this.dir, "crl.pem"), "utf8");
  }
}

function randomSerialHex(): string {
  // 16 bytes with the top byte in 0x10..0x7f: positive, fixed length, even number of hex digits.
  const bytes = randomBytes(16);
  bytes[0] = 0x10 + (bytes[0]! % 0x70);
  return bytes.toString("hex");
}

function caConfig(dir: string): string {
  return `[ ca ]
default_ca = shoal_ca
[ shoal_ca ]
dir = ${dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_days = 90
default_crl_days = 7
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
organizationName = supplied
organizationalUnitName = supplied
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = shoal-root-ca
[ v3_root ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
`;
}

export interface Pki {
  baseDir: string;
  clusterId: string;
  otherClusterId: string;
  ca: TestCa;
  foreignCa: TestCa;
  server: NodeCert;
  manager: NodeCert;
  worker: NodeCert;
  expired: NodeCert;
  otherCluster: NodeCert;
  foreign: NodeCert;
  /** A worker-role certificate that a client must refuse as a server. */
  workerAsServer: NodeCert;
  otherClusterServer: NodeCert;
  cleanup(): void;
}

export function makePki(): Pki {
  const baseDir = mkdtempSync(path.join(os.tmpdir(), "shoal-transport-"));
  const clusterId = newId();
  const otherClusterId = newId();
  const ca = new TestCa(baseDir, "ca");
  const foreignCa = new TestCa(baseDir, "foreign");
  return {
    baseDir,
    clusterId,
    otherClusterId,
    ca,
    foreignCa,
    server: ca.issue({ role: "swarm-manager", clusterId }),
    manager: ca.issue({ role: "swarm-manager", clusterId }),
    worker: ca.issue({ role: "swarm-worker", clusterId, zone: "eu" }),
    expired: ca.issue({ role: "swarm-manager", clusterId, expired: true }),
    otherCluster: ca.issue({ role: "swarm-manager", clusterId: otherClusterId }),
    foreign: foreignCa.issue({ role: "swarm-manager", clusterId }),
    workerAsServer: ca.issue({ role: "swarm-worker", clusterId }),
    otherClusterServer: ca.issue({ role: "swarm-manager", clusterId: otherClusterId }),
    cleanup: () => rmSync(baseDir, { recursive: true, force: true }),
  };
}

export function verifierFor(pki: Pki, revocation: RevocationState, clock: Clock = systemClock): PeerVerifier {
  return caPeerVerifier({ rootCaPem: pki.ca.rootCaPem, clusterId: pki.clusterId, clock, revocation });
}

/** A server with the PKI's server certificate (or `serverCert`) that trusts the PKI's CA; add services, then listen. */
export function pkiServer(
  pki: Pki,
  opts: Partial<SecureServerOptions> & { revocation?: RevocationState; serverCert?: NodeCert } = {},
): SecureServer {
  const { serverCert = pki.server, revocation = new RevocationState(), ...rest } = opts;
  return createSecureServer({
    clusterId: pki.clusterId,
    rootCaPem: pki.ca.rootCaPem,
    identity: { certPem: serverCert.certPem, keyPem: serverCert.keyPem },
    verifier: verifierFor(pki, revocation),
    revocation,
    ...rest,
  });
}

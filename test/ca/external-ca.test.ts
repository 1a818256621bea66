// The checks on a certificate an external CA returned (src/ca/external-ca.ts), without a network:
// chain to the issuing root, dates, exactly one certificate, and the accepted case.
import { test } from "node:test";
import assert from "node:assert/strict";
import { systemClock, type Clock } from "../../src/base/clock.js";
import { isShoalError } from "../../src/base/errors.js";
import { newId } from "../../src/base/ids.js";
import { checkExternalCA, checkExternalCertificate, createNodeKeyAndCsr, createRootCA, verifyCsr } from "../../src/ca/index.js";

const HOUR_MS = 3600_000;

test("a returned certificate must chain to the issuing root, have sane dates, and be one certificate", async () => {
  const root = await createRootCA({ clock: systemClock });
  const other = await createRootCA({ clock: systemClock });
  const { csrPem } = await createNodeKeyAndCsr();
  const spki = verifyCsr(csrPem).spkiDer;
  const identity = { clusterId: newId(), role: "swarm-worker" as const, nodeId: newId(), zone: "z1" };
  const expected = { ...identity, issuingRoot: root, validityMs: 24 * HOUR_MS, clock: systemClock };
  const issue = (by = root, validityMs = 24 * HOUR_MS, clock: Clock = systemClock) =>
    by.issueNodeCertificate({ csrPem, ...identity, validityMs, clock }).certPem;
  const refused = (pem: string, pattern: RegExp) =>
    assert.throws(() => checkExternalCertificate("https://ca", pem, spki, expected), (e) => isShoalError(e, "EXTERNAL_CA_MISMATCH") && pattern.test((e as Error).message));

  const good = checkExternalCertificate("https://ca", issue(), spki, expected);
  assert.match(good.serial, /^[0-9A-F]+$/);
  refused(issue(other), /not issued by this cluster's root CA/);
  refused(issue(root, 48 * HOUR_MS), /longer than the cluster's certificate expiry/);
  refused(issue(root) + issue(root), /holds 2 PEM certificates/);
  refused("not a certificate", /holds 0 PEM certificates/);
  // Issued two hours ago for 1 h 5 min (its NotBefore backdated 1 h): valid for 5 more minutes only.
  refused(issue(root, 65 * 60_000, { ...systemClock, nowMs: () => Date.now() - HOUR_MS }), /too soon/);
  // A signer whose clock is 2 minutes ahead (NotBefore 2 minutes from now): within the skew.
  checkExternalCertificate("https://ca", issue(root, 2 * HOUR_MS, { ...systemClock, nowMs: () => Date.now() + HOUR_MS + 2 * 60_000 }), spki, { ...expected, validityMs: 4 * HOUR_MS });
  // Issued "tomorrow": NotBefore is more than the allowed skew ahead.
  refused(issue(root, 2 * HOUR_MS, { ...systemClock, nowMs: () => Date.now() + 24 * HOUR_MS }), /not valid until/);
});

test("an external CA setting must be cfssl over https without credentials; the URL is normalised", () => {
  const base = { protocol: "cfssl", caCertPem: Buffer.alloc(0) };
  assert.equal(checkExternalCA({ ...base, url: "https://ca.example:8888/" }).url, "https://ca.example:8888");
  for (const url of ["http://127.0.0.1:8888", "https://u:p@ca:1", "https://ca:1/?k=v", "https://ca:1/#x", "not a url"]) {
    assert.throws(() => checkExternalCA({ ...base, url }), (e) => isShoalError(e, "INVALID_ARGUMENT"), url);
  }
  assert.throws(() => checkExternalCA({ ...base, protocol: "acme", url: "https://ca:1" }), (e) => isShoalError(e, "INVALID_ARGUMENT"));
  assert.throws(() => checkExternalCA({ ...base, url: "https://ca:1", caCertPem: Buffer.from("junk") }), (e) => isShoalError(e, "PEM_INVALID"));
});

// The revocation list: lookups, merge, GC after 7 days, proto round trip, and the CRL checked by openssl.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/base/clock.js";
import { newId } from "../../src/base/ids.js";
import { createRootCA, RevocationList, renderCrl } from "../../src/ca/index.js";
import { RevocationList as RevocationListProto } from "../../src/proto/shoal/v1/objects.js";
import { issue, openssl, opensslOk, tempDir, throwsCode, writeFiles } from "./fixtures.js";

const DAY_MS = 24 * 3600_000;
const T0 = Date.UTC(2030, 0, 1);

test("isRevoked by node ID or serial; serials compare case- and zero-insensitively", () => {
  const list = new RevocationList();
  const nodeId = newId();
  list.revoke(nodeId, ["0b02", "ABCDEF"], new Date(T0 + 90 * DAY_MS), new Date(T0));
  assert.equal(list.isRevoked({ nodeId, serial: "99" }), true);
  assert.equal(list.isRevoked({ nodeId: newId(), serial: "0B02" }), true);
  assert.equal(list.isRevoked({ nodeId: newId(), serial: "b02" }), true);
  assert.equal(list.isRevoked({ nodeId: newId(), serial: "abcdef" }), true);
  assert.equal(list.isRevoked({ nodeId: newId(), serial: "0B03" }), false);
  throwsCode(() => list.revoke("bad", [], new Date(T0), new Date(T0)), "INVALID_ARGUMENT");
  throwsCode(() => list.revoke(newId(), ["xyz"], new Date(T0), new Date(T0)), "INVALID_ARGUMENT");
  throwsCode(() => list.revoke(newId(), [], new Date(Number.NaN), new Date(T0)), "INVALID_ARGUMENT");
});

test("GC: kept until 7 days after the last certificate expired, dropped from then on", () => {
  const list = new RevocationList();
  const early = newId();
  const late = newId();
  const expiry = T0 + 10 * DAY_MS;
  list.revoke(early, ["01"], new Date(expiry), new Date(T0));
  list.revoke(late, ["02"], new Date(expiry - DAY_MS), new Date(T0));
  // Revoking again merges serials and keeps the later expiry.
  list.revoke(late, ["03"], new Date(expiry + DAY_MS), new Date(T0 + 1));
  assert.deepEqual(list.gc(expiry + 7 * DAY_MS - 1), []);
  assert.equal(list.isRevoked({ nodeId: early, serial: "FF" }), true);
  assert.deepEqual(list.gc(new Date(expiry + 7 * DAY_MS)), [early]);
  assert.equal(list.isRevoked({ nodeId: early, serial: "FF" }), false);
  assert.equal(list.isRevoked({ nodeId: newId(), serial: "01" }), false, "the dropped node's serials go too");
  assert.equal(list.isRevoked({ nodeId: late, serial: "FF" }), true);
  assert.deepEqual(list.gc(expiry + 8 * DAY_MS - 1), []);
  assert.deepEqual(list.gc(expiry + 8 * DAY_MS), [late]);
  assert.equal(list.size, 0);
});

test("proto round trip keeps every entry (including through binary encoding)", () => {
  const list = new RevocationList();
  const a = newId();
  const b = newId();
  list.revoke(a, ["0A0B", "7F"], new Date(T0 + DAY_MS), new Date(T0));
  list.revoke(b, [], new Date(T0 + 2 * DAY_MS), new Date(T0 + 5));
  const bytes = RevocationListProto.encode(list.toProto()).finish();
  const restored = RevocationList.fromProto(RevocationListProto.decode(bytes));
  assert.deepEqual(restored.entries(), list.entries());
  assert.equal(restored.isRevoked({ nodeId: newId(), serial: "7F" }), true);
  assert.equal(restored.isRevoked({ nodeId: b, serial: "01" }), true);
  assert.equal(RevocationList.fromProto(undefined).size, 0);
  // An entry without its dates cannot be trusted to be collected correctly: refused.
  throwsCode(() => RevocationList.fromProto({ nodes: [{ nodeId: a, serials: [], removedAt: new Date(T0), lastCertNotAfter: undefined }] }), "INVALID_ARGUMENT");
});

test("CRL: openssl reports a listed certificate as revoked; an empty CRL passes; label and dates", async (t) => {
  const clock = new ManualClock(Date.now());
  const root = await createRootCA({ clock });
  const revoked = await issue(root, clock);
  const kept = await issue(root, clock);
  const list = new RevocationList();
  list.revoke(revoked.nodeId, [revoked.serial], revoked.notAfter, new Date(clock.nowMs()));
  const crl = await renderCrl(root, list, { clock });
  const emptyCrl = await renderCrl(root, new RevocationList(), { clock, nextUpdateMs: DAY_MS });
  assert.match(crl, /^-----BEGIN X509 CRL-----\n[\s\S]+\n-----END X509 CRL-----\n$/);

  const dir = tempDir(t);
  writeFiles(dir, { "root.crt": root.certPem, "revoked.crt": revoked.certPem, "kept.crt": kept.certPem, "crl.pem": crl, "empty.pem": emptyCrl });
  const verdict = openssl(["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "root.crt", "revoked.crt"], dir);
  assert.notEqual(verdict.status, 0);
  assert.match(verdict.output, /certificate revoked/);
  assert.equal(opensslOk(["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "root.crt", "kept.crt"], dir).trim(), "kept.crt: OK");
  assert.equal(opensslOk(["verify", "-crl_check", "-CRLfile", "empty.pem", "-CAfile", "root.crt", "revoked.crt"], dir).trim(), "revoked.crt: OK");

  const dates = opensslOk(["crl", "-in", "crl.pem", "-noout", "-lastupdate", "-nextupdate", "-issuer"], dir);
  const lastUpdate = Date.parse(/lastUpdate=(.*)/.exec(dates)![1]!);
  const nextUpdate = Date.parse(/nextUpdate=(.*)/.exec(dates)![1]!);
  assert.ok(Math.abs(lastUpdate - clock.nowMs()) < 2000);
  assert.equal(nextUpdate - lastUpdate, 7 * DAY_MS);
  assert.match(dates, /issuer=CN = shoal-root-ca/);
  const emptyDates = opensslOk(["crl", "-in", "empty.pem", "-noout", "-lastupdate", "-nextupdate"], dir);
  assert.equal(Date.parse(/nextUpdate=(.*)/.exec(emptyDates)![1]!) - Date.parse(/lastUpdate=(.*)/.exec(emptyDates)![1]!), DAY_MS);
  await assert.rejects(renderCrl(root, list, { clock, nextUpdateMs: 0 }), /nextUpdateMs/);
});

// retryOnVersionConflict: a read-modify-write that lost a race (VERSION_CONFLICT) is redone, up to
// its attempts; any other error, and the last conflict, reach the caller.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError, ShoalError } from "../../src/base/errors.js";
import { DEFAULT_CONFLICT_ATTEMPTS, retryOnVersionConflict } from "../../src/state/index.js";

test("a conflict is redone until the write lands; other errors and the last conflict are thrown", async () => {
  let calls = 0;
  const landed = await retryOnVersionConflict(async () => {
    calls++;
    if (calls < 3) throw new ShoalError("VERSION_CONFLICT", "changed by someone else");
    return "written";
  });
  assert.equal(landed, "written");
  assert.equal(calls, 3);

  calls = 0;
  await assert.rejects(
    retryOnVersionConflict(async () => {
      calls++;
      throw new ShoalError("NOT_FOUND", "gone");
    }),
    (e) => isShoalError(e, "NOT_FOUND"),
  );
  assert.equal(calls, 1, "other errors are not retried");

  calls = 0;
  await assert.rejects(
    retryOnVersionConflict(async () => {
      calls++;
      throw new ShoalError("VERSION_CONFLICT", "again");
    }),
    (e) => isShoalError(e, "VERSION_CONFLICT"),
  );
  assert.equal(calls, DEFAULT_CONFLICT_ATTEMPTS);
});

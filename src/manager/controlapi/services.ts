// The control API's service writes: what an operator may set (never the resolved image digest),
// rollback to the previous spec, and `service rm` as a pending delete that the orchestrator
// finishes once the tasks are terminal. The field rules themselves live in state/validate.ts,
// and the store checks them again (with the zone rule for attached secrets) on every write.
import { ShoalError, isShoalError } from "../../base/errors.js";
import { isValidId, newId } from "../../base/ids.js";
import { Service, ServiceMode, ServiceSpec, UpdateState } from "../../proto/shoal/v1/objects.js";
import type { CreateServiceRequest, UpdateServiceRequest } from "../../proto/shoal/v1/control.js";
import { retryOnVersionConflict, type ObjectStore, type StoreTransaction } from "../../state/index.js";
import type { Clock } from "../../base/clock.js";

/** What these handlers need of the manager: a store to read, a proposal, the clock. */
export interface ServiceWriteContext {
  readonly store: ObjectStore;
  readonly clock: Clock;
  propose(build: (tx: StoreTransaction) => void): Promise<unknown>;
}

function specBytes(spec: ServiceSpec | undefined): Buffer {
  return Buffer.from(ServiceSpec.encode(spec ?? ServiceSpec.fromPartial({})).finish());
}

function requireService(ctx: ServiceWriteContext, serviceId: string): Service {
  if (!isValidId(serviceId)) throw new ShoalError("INVALID_ARGUMENT", "service_id must be 25 characters of [0-9a-z]");
  const service = ctx.store.getService(serviceId);
  if (service === undefined) throw new ShoalError("NOT_FOUND", `service ${serviceId} does not exist`);
  return service;
}

/**
 * The operator's spec as the store will keep it: secret references given by name only get their
 * ID; the image digest is refused because only the leader resolves it (so every node runs the
 * bytes the leader checked).
 */
function operatorSpec(ctx: ServiceWriteContext, given: ServiceSpec | undefined, current?: ServiceSpec): ServiceSpec {
  if (given === undefined) throw new ShoalError("INVALID_ARGUMENT", "spec is required");
  const spec = ServiceSpec.fromPartial(given);
  // Meaningless rather than harmful, so the store lets the orchestrator ignore it; an operator hears of it.
  if (spec.mode === ServiceMode.SERVICE_MODE_GLOBAL && spec.replicas !== 0) {
    throw new ShoalError("INVALID_ARGUMENT", "a global service runs one task per eligible node: replicas apply only to replicated services");
  }
  const container = spec.container;
  if (container === undefined) return spec;
  // A client that read the service and sends its spec back may carry what the managers stored;
  // anything else is the operator trying to pick the bytes every node will run.
  const stored = current?.container;
  if (container.imageDigest !== "" && container.imageDigest !== stored?.imageDigest) {
    throw new ShoalError("INVALID_ARGUMENT", "image_digest is set by the managers when they resolve the image; give the digest in the image reference (NAME@sha256:...) instead");
  }
  if (container.imageDigest !== "" && container.image !== stored?.image) container.imageDigest = "";
  for (const ref of container.secrets) {
    if (ref.secretId !== "" || ref.secretName === "") continue;
    const secret = ctx.store.findSecretByName(ref.secretName);
    if (secret === undefined) throw new ShoalError("NOT_FOUND", `secret ${JSON.stringify(ref.secretName)} does not exist; create it first with \`shoal secret create\``);
    ref.secretId = secret.id;
  }
  return spec;
}

export async function createService(ctx: ServiceWriteContext, req: CreateServiceRequest): Promise<Service | undefined> {
  const spec = operatorSpec(ctx, req.spec);
  const id = newId();
  try {
    await ctx.propose((tx) => tx.createService(Service.fromPartial({ id, spec })));
  } catch (err) {
    const existing = isShoalError(err, "ALREADY_EXISTS") ? ctx.store.findServiceByName(spec.name) : undefined;
    if (existing?.pendingDelete === true) {
      throw new ShoalError("ALREADY_EXISTS", `service ${JSON.stringify(spec.name)} is being removed; wait until its tasks have stopped (\`shoal service ls\`), or choose another name`);
    }
    throw err;
  }
  return ctx.store.getService(id);
}

/**
 * A new spec (compare-and-set on `service_version`), or with `rollback` the previous one. As in
 * SwarmKit, the spec replaced becomes `previous_spec` (so a second rollback undoes the first), a
 * rollback starts with update status ROLLBACK_STARTED, and a new spec clears the update status.
 */
export async function updateService(ctx: ServiceWriteContext, req: UpdateServiceRequest): Promise<Service | undefined> {
  const current = requireService(ctx, req.serviceId);
  const name = JSON.stringify(current.spec?.name ?? current.id);
  if (current.pendingDelete) throw new ShoalError("FAILED_PRECONDITION", `service ${name} is being removed; it cannot be changed`);
  const next: Service = { ...current, meta: { ...current.meta!, version: req.serviceVersion } };
  if (req.rollback) {
    if (current.previousSpec === undefined) {
      throw new ShoalError("FAILED_PRECONDITION", `service ${name} has no previous spec to roll back to; it was never updated`);
    }
    next.spec = current.previousSpec;
    next.previousSpec = current.spec;
    // The store bumps spec_version for the new spec: the rollback is the update to that version.
    next.updateStatus = { state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED, message: "manually requested rollback", startedAt: new Date(ctx.clock.nowMs()), completedAt: undefined, specVersion: current.specVersion + 1n };
  } else {
    const spec = operatorSpec(ctx, req.spec, current.spec);
    if (spec.mode !== current.spec?.mode) {
      throw new ShoalError("INVALID_ARGUMENT", `the mode of service ${name} cannot change; create a new service with the other mode`);
    }
    if (!specBytes(spec).equals(specBytes(current.spec))) {
      next.spec = spec;
      next.previousSpec = current.spec;
      next.updateStatus = undefined;
    }
  }
  await ctx.propose((tx) => tx.updateService(next));
  return ctx.store.getService(req.serviceId);
}

/**
 * `service rm`: marks the service pending delete; the orchestrator shuts its tasks down and deletes
 * the tasks and the service once they are terminal. Marking again is a no-op. The mark is a
 * read-modify-write retried on a version conflict (the orchestrator writes update status too).
 */
export async function removeService(ctx: ServiceWriteContext, serviceId: string): Promise<void> {
  await retryOnVersionConflict(async () => {
    const current = requireService(ctx, serviceId);
    if (current.pendingDelete) return;
    await ctx.propose((tx) => tx.updateService({ ...current, pendingDelete: true }));
  });
}

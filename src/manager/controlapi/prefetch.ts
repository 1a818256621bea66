// ListPrefetchJobs: the leader's prefetch jobs for `shoal image prefetch status` (DESIGN.md §8).
// The views hold node IDs, zones, byte counts and error codes; never an order's grants or the
// registry header a seed pulls with.
import { ShoalError } from "../../base/errors.js";
import { isValidId } from "../../base/ids.js";
import type { ListPrefetchJobsRequest, ListPrefetchJobsResponse } from "../../proto/shoal/v1/control.js";
import type { ObjectStore } from "../../state/index.js";
import type { PrefetchStatusSource } from "../prefetch/job-views.js";

export function prefetchHandlers(store: ObjectStore, source: PrefetchStatusSource | undefined) {
  return {
    listPrefetchJobs: async (req: ListPrefetchJobsRequest): Promise<ListPrefetchJobsResponse> => {
      const jobs = source?.list() ?? [];
      if (req.service === "") return { jobs };
      const service = (isValidId(req.service) ? store.getService(req.service) : undefined) ?? store.findServiceByName(req.service);
      if (service === undefined) throw new ShoalError("NOT_FOUND", `service ${req.service} does not exist`);
      return { jobs: jobs.filter((j) => j.serviceId === service.id) };
    },
  };
}

// `service rm` (Service.pending_delete) and tasks whose service is gone: every task is told to shut
// down and is deleted once it has ended, its node is DOWN or gone, or it was never assigned; the
// service itself goes with its last task.
import { NodeState, TaskState, type Node, type Service, type Task } from "../../proto/shoal/v1/objects.js";
import { isTerminalState } from "../../state/index.js";
import { emptyPlan, type ServicePlan } from "./plan.js";

export function planRemoval(service: Service | undefined, tasks: readonly Task[], nodes: ReadonlyMap<string, Node>): ServicePlan {
  const plan = emptyPlan();
  let left = 0;
  for (const task of tasks) {
    const node = task.nodeId === "" ? undefined : nodes.get(task.nodeId);
    const gone = task.nodeId !== "" && node === undefined;
    const down = node?.status?.state === NodeState.NODE_STATE_DOWN;
    if (task.nodeId === "" || gone || down || isTerminalState(task.status?.state ?? TaskState.TASK_STATE_NEW)) {
      plan.units.push({ creates: [], updates: [], removes: [task] });
      continue;
    }
    left++;
    if (task.desiredState < TaskState.TASK_STATE_SHUTDOWN) {
      plan.units.push({ creates: [], updates: [{ ...task, desiredState: TaskState.TASK_STATE_SHUTDOWN }], removes: [] });
    }
  }
  if (service !== undefined && left === 0) plan.units.push({ creates: [], updates: [], removes: [], removeServiceId: service.id });
  return plan;
}

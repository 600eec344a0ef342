/** The lab-level commands (src/cli/lab.ts runs them), listed apart so main.ts can dispatch without loading them. */
export const LAB_COMMANDS: readonly string[] = [
  "up",
  "down",
  "list",
  "status",
  "logs",
  "exec",
  "stop",
  "start",
  "restart",
  "kubeconfig",
  "etcdctl",
  "probe",
];

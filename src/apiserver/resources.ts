import { isIP } from "node:net";
import { any, bool, type Definitions, int, list, map, obj, ref, type Schema, str } from "./schema.js";
import { type FieldError, fieldErrors } from "./status.js";
import { configKey, dns1123Label, type NameRule, qualifiedName } from "./validation.js";

/**
 * The built-in resource types. Adding one is adding a `ResourceType` to `RESOURCES`: its names,
 * where it is stored, its schema (OpenAPI, strict validation, strategic merge), its defaults and
 * validation, its table columns (`kubectl get`) and its field selectors.
 */

export type KObject = Record<string, unknown> & { metadata: Record<string, unknown> };

export interface TableColumn {
  readonly name: string;
  readonly type: "string" | "integer" | "number" | "boolean";
  readonly format: string;
  readonly description: string;
  /** 0: always shown; 1: only with -o wide. */
  readonly priority: 0 | 1;
}

export interface ResourceType {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
  readonly categories: readonly string[];
  /** The key segment under the etcd prefix, as kube-apiserver names it ("services/specs", "minions"). */
  readonly storagePrefix: string;
  readonly nameRule: NameRule;
  /** The OpenAPI component name of the type's schema. */
  readonly schemaName: string;
  readonly description: string;
  /** Has a `status` subresource (status is kept on main-resource writes, set only through /status). */
  readonly statusSubresource: boolean;
  /** metadata.generation counts changes to the spec. */
  readonly tracksGeneration: boolean;
  /** Fills in defaults (create and update). */
  readonly defaults?: (o: KObject) => void;
  /** Resets what a client may not set on create (e.g. a pod's status). */
  readonly prepareForCreate?: (o: KObject) => void;
  readonly validate?: (o: KObject, old: KObject | undefined) => FieldError[];
  readonly columns: readonly TableColumn[];
  /** One table row's cells after the name, in `columns` order (the Name column comes first). */
  readonly cells: (o: KObject, now: number) => unknown[];
  /** Field selectors beyond metadata.name and metadata.namespace. */
  readonly fields?: Readonly<Record<string, (o: KObject) => string>>;
}

// ---------------------------------------------------------------------------------------------
// Shared schemas

const META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

const OBJECT_META = obj("Standard object metadata: identity, labels, annotations and server-set bookkeeping.", {
  name: str("The object's name, unique within its namespace (or cluster, for cluster-scoped types)."),
  generateName: str("A prefix: the server appends random characters to make a unique name when name is empty."),
  namespace: str("The namespace the object lives in; empty for cluster-scoped objects."),
  selfLink: str("Deprecated; always empty."),
  uid: str("A unique identifier the server assigns at creation; never reused."),
  resourceVersion: str(
    "An opaque version: the store revision of the object's last change. Send it back on update for optimistic concurrency.",
  ),
  generation: int("A counter of changes to the desired state (spec), set by the server."),
  creationTimestamp: str("When the server created the object (RFC 3339, UTC).", { format: "date-time" }),
  deletionTimestamp: str("When deletion was requested (set by the server).", { format: "date-time" }),
  deletionGracePeriodSeconds: int("Seconds allowed for graceful termination before the object is removed."),
  labels: map("Key/value pairs for organizing and selecting objects (label selectors)."),
  annotations: map("Key/value pairs for arbitrary non-identifying metadata."),
  ownerReferences: list("Objects this object depends on.", any("A reference to an owning object."), {
    mergeKey: "uid",
    patchStrategy: "merge",
  }),
  finalizers: list("Conditions that must be cleared before the object is deleted.", str("A finalizer name."), {
    patchStrategy: "merge",
  }),
  managedFields: list("Which field manager set which fields.", any("A managed fields entry.")),
});

const OBJECT_REFERENCE = obj("A reference to another object.", {
  kind: str("Kind of the referent."),
  namespace: str("Namespace of the referent."),
  name: str("Name of the referent."),
  uid: str("UID of the referent."),
  apiVersion: str("API version of the referent."),
  resourceVersion: str("The referent's resourceVersion this reference was made at."),
  fieldPath: str("A field within the referent (for example a container: spec.containers{name})."),
});

function top(description: string, properties: Record<string, Schema>, required?: string[]): Schema {
  return obj(
    description,
    {
      apiVersion: str("The versioned schema of this representation of an object (for example v1)."),
      kind: str("The REST resource this object represents (for example ConfigMap)."),
      metadata: ref(META, "Standard object metadata."),
      ...properties,
    },
    required,
  );
}

const CONTAINER_PORT = obj("A network port in a container.", {
  name: str("An IANA_SVC_NAME for the port, unique within the pod."),
  containerPort: int("The port number on the container's IP address (1-65535)."),
  hostPort: int("The port number to expose on the host."),
  protocol: str("TCP, UDP or SCTP; defaults to TCP."),
  hostIP: str("The host IP to bind the external port to."),
});

const ENV_VAR = obj("An environment variable in a container.", {
  name: str("Name of the variable."),
  value: str("Value of the variable."),
  valueFrom: any("Where the value comes from (a ConfigMap, Secret, field or resource)."),
});

const CONTAINER = obj(
  "A container to run in a pod.",
  {
    name: str("The container's name, a DNS label unique within the pod."),
    image: str("The container image name."),
    command: list("The entrypoint; the image's ENTRYPOINT when absent.", str("An argument.")),
    args: list("Arguments to the entrypoint; the image's CMD when absent.", str("An argument.")),
    workingDir: str("The container's working directory."),
    ports: list("Ports to expose from the container.", ref("io.k8s.api.core.v1.ContainerPort"), {
      mergeKey: "containerPort",
      patchStrategy: "merge",
    }),
    envFrom: list("Sources of environment variables.", any("A source of variables.")),
    env: list("Environment variables to set.", ref("io.k8s.api.core.v1.EnvVar"), {
      mergeKey: "name",
      patchStrategy: "merge",
    }),
    resources: any("Compute resource requests and limits."),
    resizePolicy: list("Resize policy per resource.", any("A resize policy.")),
    restartPolicy: str("Restart policy for this container (init containers: Always makes a sidecar)."),
    volumeMounts: list("Volumes to mount into the container's filesystem.", any("A volume mount."), {
      mergeKey: "mountPath",
      patchStrategy: "merge",
    }),
    volumeDevices: list("Block devices to use.", any("A volume device."), {
      mergeKey: "devicePath",
      patchStrategy: "merge",
    }),
    livenessProbe: any("Periodic probe of container liveness."),
    readinessProbe: any("Periodic probe of container readiness."),
    startupProbe: any("Probe that the container has started."),
    lifecycle: any("Actions on container lifecycle events."),
    terminationMessagePath: str("Where the container's termination message is written."),
    terminationMessagePolicy: str("File or FallbackToLogsOnError."),
    imagePullPolicy: str("Always, Never or IfNotPresent."),
    securityContext: any("Security options for the container."),
    stdin: bool("Allocate a buffer for stdin."),
    stdinOnce: bool("Close stdin after the first attach."),
    tty: bool("Allocate a TTY."),
  },
  ["name"],
);

const POD_SPEC = obj(
  "The desired behaviour of a pod.",
  {
    volumes: list("Volumes that containers may mount.", any("A named volume."), {
      mergeKey: "name",
      patchStrategy: "merge",
    }),
    initContainers: list("Containers run in order before the app containers.", ref("io.k8s.api.core.v1.Container"), {
      mergeKey: "name",
      patchStrategy: "merge",
    }),
    containers: list("The pod's containers (at least one).", ref("io.k8s.api.core.v1.Container"), {
      mergeKey: "name",
      patchStrategy: "merge",
    }),
    ephemeralContainers: list("Debugging containers.", any("An ephemeral container."), {
      mergeKey: "name",
      patchStrategy: "merge",
    }),
    restartPolicy: str("Always, OnFailure or Never; defaults to Always."),
    terminationGracePeriodSeconds: int("Seconds the pod gets to terminate gracefully; defaults to 30."),
    activeDeadlineSeconds: int("Seconds the pod may be active before it is failed."),
    dnsPolicy: str("ClusterFirstWithHostNet, ClusterFirst, Default or None; defaults to ClusterFirst."),
    nodeSelector: map("Labels a node must have for the pod to fit on it."),
    serviceAccountName: str("The service account the pod runs as."),
    serviceAccount: str("Deprecated alias of serviceAccountName."),
    automountServiceAccountToken: bool("Whether a service account token is mounted."),
    nodeName: str("The node the pod is bound to."),
    hostNetwork: bool("Use the host's network namespace."),
    hostPID: bool("Use the host's PID namespace."),
    hostIPC: bool("Use the host's IPC namespace."),
    shareProcessNamespace: bool("Share one process namespace between containers."),
    securityContext: any("Pod-level security attributes."),
    imagePullSecrets: list("Secrets for pulling images.", any("A reference to a secret."), {
      mergeKey: "name",
      patchStrategy: "merge",
    }),
    hostname: str("The pod's hostname."),
    subdomain: str("The pod's DNS subdomain."),
    affinity: any("Scheduling constraints."),
    schedulerName: str("The scheduler that places the pod."),
    tolerations: list("Taints the pod tolerates.", any("A toleration.")),
    hostAliases: list("Entries added to the pod's hosts file.", any("A host alias."), {
      mergeKey: "ip",
      patchStrategy: "merge",
    }),
    priorityClassName: str("The pod's priority class."),
    priority: int("The pod's priority value."),
    dnsConfig: any("DNS parameters."),
    readinessGates: list("Extra conditions for pod readiness.", any("A readiness gate.")),
    runtimeClassName: str("The RuntimeClass to run the pod with."),
    enableServiceLinks: bool("Inject service environment variables."),
    preemptionPolicy: str("Never or PreemptLowerPriority."),
    overhead: map("Resource overhead of the pod's sandbox.", any("A quantity.")),
    topologySpreadConstraints: list("How pods spread across topology domains.", any("A constraint."), {
      mergeKey: "topologyKey",
      patchStrategy: "merge",
    }),
    setHostnameAsFQDN: bool("Set the hostname to the pod's FQDN."),
    os: any("The pod's operating system."),
    hostUsers: bool("Use the host's user namespace."),
    schedulingGates: list("Gates that block scheduling.", any("A scheduling gate."), {
      mergeKey: "name",
      patchStrategy: "merge",
    }),
    resourceClaims: list("Resource claims.", any("A resource claim."), { mergeKey: "name", patchStrategy: "merge" }),
    resources: any("Pod-level resource requirements."),
  },
  ["containers"],
);

const SERVICE_PORT = obj("A port a service exposes.", {
  name: str("The port's name, required when the service has more than one port."),
  protocol: str("TCP, UDP or SCTP; defaults to TCP."),
  appProtocol: str("The application protocol of this port."),
  port: int("The port the service exposes (1-65535)."),
  targetPort: any("The port (number or name) on the selected pods; defaults to port.", "int-or-string"),
  nodePort: int("The port on each node (NodePort and LoadBalancer services)."),
});

const SERVICE_SPEC = obj("The desired behaviour of a service.", {
  ports: list("The ports the service exposes.", ref("io.k8s.api.core.v1.ServicePort"), {
    mergeKey: "port",
    patchStrategy: "merge",
  }),
  selector: map("Labels of the pods the service routes to."),
  clusterIP: str("The service's virtual IP; the server assigns one, or None makes the service headless."),
  clusterIPs: list("The service's virtual IPs, one per IP family.", str("An IP address.")),
  type: str("ClusterIP, NodePort, LoadBalancer or ExternalName; defaults to ClusterIP.", {
    enum: ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
  }),
  externalIPs: list("Extra IPs that route to the service.", str("An IP address.")),
  sessionAffinity: str("ClientIP or None; defaults to None."),
  loadBalancerIP: str("Deprecated: a requested load balancer IP."),
  loadBalancerSourceRanges: list("Client ranges allowed through the load balancer.", str("A CIDR.")),
  externalName: str("The DNS name an ExternalName service aliases."),
  externalTrafficPolicy: str("Cluster or Local."),
  healthCheckNodePort: int("Health check node port."),
  publishNotReadyAddresses: bool("Publish addresses of pods that are not ready."),
  sessionAffinityConfig: any("Session affinity settings."),
  ipFamilies: list("IP families of the service.", str("IPv4 or IPv6.")),
  ipFamilyPolicy: str("SingleStack, PreferDualStack or RequireDualStack."),
  allocateLoadBalancerNodePorts: bool("Allocate node ports for LoadBalancer services."),
  loadBalancerClass: str("The load balancer implementation."),
  internalTrafficPolicy: str("Cluster or Local."),
  trafficDistribution: str("A preference for how traffic is distributed."),
});

export const DEFINITIONS: Definitions = new Map<string, Schema>([
  [META, OBJECT_META],
  ["io.k8s.api.core.v1.ObjectReference", OBJECT_REFERENCE],
  ["io.k8s.api.core.v1.Container", CONTAINER],
  ["io.k8s.api.core.v1.ContainerPort", CONTAINER_PORT],
  ["io.k8s.api.core.v1.EnvVar", ENV_VAR],
  ["io.k8s.api.core.v1.PodSpec", POD_SPEC],
  ["io.k8s.api.core.v1.ServicePort", SERVICE_PORT],
  ["io.k8s.api.core.v1.ServiceSpec", SERVICE_SPEC],
  [
    "io.k8s.api.core.v1.ConfigMap",
    top("Non-confidential configuration data as key/value pairs that pods consume.", {
      data: map("Configuration entries (UTF-8 strings). Keys: alphanumerics, '-', '_' or '.'."),
      binaryData: map("Binary configuration entries, base64-encoded. Keys may not repeat those in data.", {
        type: "string",
        format: "byte",
      }),
      immutable: bool("When true, data and binaryData can no longer change (the object can still be deleted)."),
    }),
  ],
  [
    "io.k8s.api.core.v1.Secret",
    top("Confidential data (passwords, tokens, keys), base64-encoded at rest in the API.", {
      data: map("Secret entries, base64-encoded.", { type: "string", format: "byte" }),
      stringData: map("Write-only plain-text entries, merged into data on write."),
      type: str("Used to check the secret's content (Opaque, kubernetes.io/tls, ...); defaults to Opaque."),
      immutable: bool("When true, the data can no longer change."),
    }),
  ],
  [
    "io.k8s.api.core.v1.Namespace",
    top("A scope for names; deleting a namespace deletes everything in it.", {
      spec: obj("Namespace specification.", {
        finalizers: list("Finalizers that must be cleared before deletion.", str("A finalizer.")),
      }),
      status: obj("Namespace status.", {
        phase: str("Active or Terminating."),
        conditions: list("Namespace conditions.", any("A condition."), { mergeKey: "type", patchStrategy: "merge" }),
      }),
    }),
  ],
  [
    "io.k8s.api.core.v1.Service",
    top("A named abstraction of a network service: a stable virtual IP and ports in front of selected pods.", {
      spec: ref("io.k8s.api.core.v1.ServiceSpec", "The desired behaviour of the service."),
      status: any("The observed state of the service (load balancer status, conditions)."),
    }),
  ],
  [
    "io.k8s.api.core.v1.Pod",
    top("A group of containers that run together on one node. (This server stores pods; nothing runs them.)", {
      spec: ref("io.k8s.api.core.v1.PodSpec", "The desired behaviour of the pod."),
      status: any("The observed state of the pod."),
    }),
  ],
  [
    "io.k8s.api.core.v1.Node",
    top("A worker machine in the cluster.", {
      spec: obj("Node specification.", {
        podCIDR: str("The pod IP range assigned to the node."),
        podCIDRs: list("The pod IP ranges assigned to the node.", str("A CIDR.")),
        providerID: str("The node's ID at its cloud provider."),
        unschedulable: bool("When true, new pods are not scheduled onto the node."),
        taints: list("Taints on the node.", any("A taint.")),
        configSource: any("Deprecated."),
        externalID: str("Deprecated."),
      }),
      status: any("The observed state of the node."),
    }),
  ],
  [
    "io.k8s.api.core.v1.Event",
    top("A report of something that happened to an object.", {
      involvedObject: ref("io.k8s.api.core.v1.ObjectReference", "The object this event is about."),
      reason: str("A short, machine-readable reason for the event."),
      message: str("A human-readable description."),
      source: obj("The component that reported the event.", {
        component: str("Component name."),
        host: str("Node name."),
      }),
      firstTimestamp: str("When the event was first recorded.", { format: "date-time" }),
      lastTimestamp: str("When the event last recurred.", { format: "date-time" }),
      count: int("How many times the event occurred."),
      type: str("Normal or Warning."),
      eventTime: str("When the event was first observed (microsecond precision).", { format: "date-time" }),
      series: any("Data about a series of events."),
      action: str("What action was taken or failed."),
      related: ref("io.k8s.api.core.v1.ObjectReference", "A second object involved."),
      reportingComponent: str("The controller that emitted the event."),
      reportingInstance: str("The controller instance that emitted the event."),
    }),
  ],
  [
    "io.k8s.api.core.v1.ServiceAccount",
    top("An identity for processes that run in pods.", {
      secrets: list("Secrets pods running as this account may use.", ref("io.k8s.api.core.v1.ObjectReference"), {
        mergeKey: "name",
        patchStrategy: "merge",
      }),
      imagePullSecrets: list("Secrets for pulling images.", any("A reference to a secret.")),
      automountServiceAccountToken: bool("Whether pods mount a token for this account by default."),
    }),
  ],
  [
    "io.k8s.api.coordination.v1.Lease",
    top("A lease, used for leader election and node heartbeats.", {
      spec: obj("Lease specification.", {
        holderIdentity: str("The identity of the current holder."),
        leaseDurationSeconds: int("How long candidates wait before taking the lease over."),
        acquireTime: str("When the current holder acquired the lease.", { format: "date-time" }),
        renewTime: str("When the current holder last renewed the lease.", { format: "date-time" }),
        leaseTransitions: int("How many times the lease changed holders."),
        strategy: str("The leader election strategy."),
        preferredHolder: str("A holder the lease should move to."),
      }),
    }),
  ],
]);

// ---------------------------------------------------------------------------------------------
// Helpers for defaults, validation and table cells

function asRecord(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function ensure(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = o[key];
  if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  const fresh: Record<string, unknown> = {};
  o[key] = fresh;
  return fresh;
}

function arr(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? (v as Record<string, unknown>[]) : [];
}

function s(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/** Kubernetes' short human duration: "45s", "5m30s", "3h", "2d5h", "400d", "3y20d". */
export function humanDuration(ms: number): string {
  // Truncation toward zero, so up to 2 s of clock skew still reads "0s".
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8)
    return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 365 * 8)
    return days % 365 === 0 ? `${Math.floor(days / 365)}y` : `${Math.floor(days / 365)}y${days % 365}d`;
  return `${Math.floor(days / 365)}y`;
}

export function age(o: KObject, now: number): string {
  const ts = s(o.metadata.creationTimestamp);
  if (!ts) return "<unknown>";
  return humanDuration(now - Date.parse(ts));
}

const AGE: TableColumn = {
  name: "Age",
  type: "string",
  format: "",
  description: "Time since the object was created.",
  priority: 0,
};

function col(
  name: string,
  description: string,
  priority: 0 | 1 = 0,
  type: TableColumn["type"] = "string",
): TableColumn {
  return { name, type, format: "", description, priority };
}

function mapSize(v: unknown): number {
  return Object.keys(asRecord(v)).length;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const MAX_DATA = 1024 * 1024;

function validateDataMaps(o: KObject, fields: string[], base64Fields: string[]): FieldError[] {
  const errs: FieldError[] = [];
  const seen = new Set<string>();
  let size = 0;
  for (const field of fields) {
    for (const [k, v] of Object.entries(asRecord(o[field]))) {
      for (const m of configKey(k)) errs.push(fieldErrors.invalid(`${field}[${k}]`, k, m));
      if (seen.has(k))
        errs.push(fieldErrors.invalid(`${field}[${k}]`, k, "duplicate of key present in another data map"));
      seen.add(k);
      if (typeof v !== "string") {
        errs.push(fieldErrors.invalid(`${field}[${k}]`, v, "must be a string"));
        continue;
      }
      if (base64Fields.includes(field)) {
        if (v.length % 4 !== 0 || !BASE64.test(v))
          errs.push(fieldErrors.invalid(`${field}[${k}]`, "<value omitted>", "illegal base64 data"));
        size += Buffer.from(v, "base64").length;
      } else size += Buffer.byteLength(v);
      size += k.length;
    }
  }
  if (size > MAX_DATA) errs.push(fieldErrors.tooLong(fields.length === 1 ? (fields[0] as string) : "data", MAX_DATA));
  return errs;
}

function immutableData(o: KObject, old: KObject | undefined, fields: string[]): FieldError[] {
  if (old?.immutable !== true) return [];
  const errs: FieldError[] = [];
  if (o.immutable !== true) errs.push(fieldErrors.forbidden("immutable", "field is immutable when `immutable` is set"));
  for (const f of fields)
    if (JSON.stringify(o[f] ?? {}) !== JSON.stringify(old[f] ?? {}))
      errs.push(fieldErrors.forbidden(f, "field is immutable when `immutable` is set"));
  return errs;
}

// ---------------------------------------------------------------------------------------------
// The types

const configmaps: ResourceType = {
  group: "",
  version: "v1",
  kind: "ConfigMap",
  plural: "configmaps",
  singular: "configmap",
  namespaced: true,
  shortNames: ["cm"],
  categories: [],
  storagePrefix: "configmaps",
  nameRule: "subdomain",
  schemaName: "io.k8s.api.core.v1.ConfigMap",
  description: "",
  statusSubresource: false,
  tracksGeneration: false,
  validate: (o, old) => [
    ...validateDataMaps(o, ["data", "binaryData"], ["binaryData"]),
    ...immutableData(o, old, ["data", "binaryData"]),
  ],
  columns: [col("Data", "Number of entries in data and binaryData.", 0, "integer"), AGE],
  cells: (o, now) => [mapSize(o.data) + mapSize(o.binaryData), age(o, now)],
};

const secrets: ResourceType = {
  group: "",
  version: "v1",
  kind: "Secret",
  plural: "secrets",
  singular: "secret",
  namespaced: true,
  shortNames: [],
  categories: [],
  storagePrefix: "secrets",
  nameRule: "subdomain",
  schemaName: "io.k8s.api.core.v1.Secret",
  description: "",
  statusSubresource: false,
  tracksGeneration: false,
  defaults: (o) => {
    if (!o.type) o.type = "Opaque";
    // stringData is write-only: merged into data (base64), never stored.
    const stringData = asRecord(o.stringData);
    if (Object.keys(stringData).length > 0) {
      const data = ensure(o, "data");
      for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(String(v)).toString("base64");
    }
    delete o.stringData;
  },
  validate: (o, old) => {
    const errs = [...validateDataMaps(o, ["data"], ["data"]), ...immutableData(o, old, ["data"])];
    if (old && old.type !== o.type) errs.push(fieldErrors.invalid("type", o.type, "field is immutable"));
    const data = asRecord(o.data);
    if (o.type === "kubernetes.io/tls") {
      for (const k of ["tls.crt", "tls.key"]) if (!(k in data)) errs.push(fieldErrors.required(`data[${k}]`));
    } else if (o.type === "kubernetes.io/dockerconfigjson" && !(".dockerconfigjson" in data)) {
      errs.push(fieldErrors.required("data[.dockerconfigjson]"));
    } else if (o.type === "kubernetes.io/basic-auth" && !("username" in data) && !("password" in data)) {
      errs.push(fieldErrors.required("data[username]", "either username or password is required"));
    }
    return errs;
  },
  columns: [col("Type", "The secret's type."), col("Data", "Number of entries in data.", 0, "integer"), AGE],
  cells: (o, now) => [s(o.type), mapSize(o.data), age(o, now)],
  fields: { type: (o) => s(o.type) },
};

const namespaces: ResourceType = {
  group: "",
  version: "v1",
  kind: "Namespace",
  plural: "namespaces",
  singular: "namespace",
  namespaced: false,
  shortNames: ["ns"],
  categories: [],
  storagePrefix: "namespaces",
  nameRule: "label",
  schemaName: "io.k8s.api.core.v1.Namespace",
  description: "",
  statusSubresource: true,
  tracksGeneration: false,
  defaults: (o) => {
    const labels = ensure(o.metadata, "labels");
    labels["kubernetes.io/metadata.name"] = o.metadata.name;
    const spec = ensure(o, "spec");
    if (!Array.isArray(spec.finalizers)) spec.finalizers = ["kubernetes"];
    const status = ensure(o, "status");
    if (!status.phase) status.phase = "Active";
  },
  prepareForCreate: (o) => {
    o.status = { phase: "Active" };
  },
  columns: [col("Status", "The namespace's phase (Active or Terminating)."), AGE],
  cells: (o, now) => [s(asRecord(o.status).phase), age(o, now)],
  fields: { "status.phase": (o) => s(asRecord(o.status).phase) },
};

function servicePorts(o: KObject): string {
  const ports = arr(asRecord(o.spec).ports);
  if (ports.length === 0) return "<none>";
  return ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ""}/${s(p.protocol) || "TCP"}`).join(",");
}

function selectorText(v: unknown): string {
  const entries = Object.entries(asRecord(v));
  return entries.length === 0 ? "<none>" : entries.map(([k, val]) => `${k}=${val}`).join(",");
}

const services: ResourceType = {
  group: "",
  version: "v1",
  kind: "Service",
  plural: "services",
  singular: "service",
  namespaced: true,
  shortNames: ["svc"],
  categories: ["all"],
  storagePrefix: "services/specs",
  nameRule: "dns1035",
  schemaName: "io.k8s.api.core.v1.Service",
  description: "",
  statusSubresource: true,
  tracksGeneration: false,
  defaults: (o) => {
    const spec = ensure(o, "spec");
    if (!spec.type) spec.type = "ClusterIP";
    if (spec.type !== "ExternalName") {
      if (!spec.sessionAffinity) spec.sessionAffinity = "None";
      if (!spec.internalTrafficPolicy) spec.internalTrafficPolicy = "Cluster";
      if (!spec.ipFamilyPolicy) spec.ipFamilyPolicy = "SingleStack";
      if (!Array.isArray(spec.ipFamilies)) spec.ipFamilies = ["IPv4"];
    }
    for (const p of arr(spec.ports)) {
      if (!p.protocol) p.protocol = "TCP";
      if (p.targetPort === undefined && typeof p.port === "number") p.targetPort = p.port;
    }
    if (!o.status) o.status = { loadBalancer: {} };
  },
  validate: (o, old) => {
    const errs: FieldError[] = [];
    const spec = asRecord(o.spec);
    const type = spec.type;
    const types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if (!types.includes(String(type))) errs.push(fieldErrors.notSupported("spec.type", type, types));
    const ports = arr(spec.ports);
    const headless = spec.clusterIP === "None";
    if (ports.length === 0 && type !== "ExternalName" && !headless) errs.push(fieldErrors.required("spec.ports"));
    const names = new Set<string>();
    ports.forEach((p, i) => {
      const f = `spec.ports[${i}]`;
      if (typeof p.port !== "number" || p.port < 1 || p.port > 65535 || !Number.isInteger(p.port))
        errs.push(fieldErrors.invalid(`${f}.port`, p.port ?? 0, "must be between 1 and 65535, inclusive"));
      if (!["TCP", "UDP", "SCTP"].includes(String(p.protocol)))
        errs.push(fieldErrors.notSupported(`${f}.protocol`, p.protocol, ["SCTP", "TCP", "UDP"]));
      const name = s(p.name);
      if (ports.length > 1 && !name) errs.push(fieldErrors.required(`${f}.name`));
      if (name) {
        if (names.has(name)) errs.push(fieldErrors.duplicate(`${f}.name`, name));
        names.add(name);
        for (const m of dns1123Label(name)) errs.push(fieldErrors.invalid(`${f}.name`, name, m));
      }
    });
    if (type === "ExternalName" && !s(spec.externalName)) errs.push(fieldErrors.required("spec.externalName"));
    const ip = s(spec.clusterIP);
    if (ip && ip !== "None" && !isIP(ip))
      errs.push(
        fieldErrors.invalid("spec.clusterIP", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
      );
    if (old) {
      const oldIp = s(asRecord(old.spec).clusterIP);
      if (oldIp && ip !== oldIp && type !== "ExternalName")
        errs.push(fieldErrors.invalid("spec.clusterIPs[0]", ip, "may not change once set"));
    }
    for (const [k] of Object.entries(asRecord(spec.selector)))
      for (const m of qualifiedName(k)) errs.push(fieldErrors.invalid("spec.selector", k, m));
    return errs;
  },
  columns: [
    col("Type", "The service's type."),
    col("Cluster-IP", "The service's virtual IP."),
    col("External-IP", "IPs that route to the service from outside."),
    col("Port(s)", "The ports the service exposes."),
    AGE,
    col("Selector", "Labels of the pods the service routes to.", 1),
  ],
  cells: (o, now) => {
    const spec = asRecord(o.spec);
    const external =
      spec.type === "ExternalName"
        ? s(spec.externalName)
        : arr(spec.externalIPs).length > 0
          ? (spec.externalIPs as string[]).join(",")
          : spec.type === "LoadBalancer"
            ? "<pending>"
            : "<none>";
    return [
      s(spec.type),
      s(spec.clusterIP) || "<none>",
      external,
      servicePorts(o),
      age(o, now),
      selectorText(spec.selector),
    ];
  },
};

function podStatusText(o: KObject): string {
  if (o.metadata.deletionTimestamp) return "Terminating";
  const status = asRecord(o.status);
  return s(status.reason) || s(status.phase) || "Unknown";
}

const pods: ResourceType = {
  group: "",
  version: "v1",
  kind: "Pod",
  plural: "pods",
  singular: "pod",
  namespaced: true,
  shortNames: ["po"],
  categories: ["all"],
  storagePrefix: "pods",
  nameRule: "subdomain",
  schemaName: "io.k8s.api.core.v1.Pod",
  description: "",
  statusSubresource: true,
  tracksGeneration: true,
  defaults: (o) => {
    const spec = ensure(o, "spec");
    if (!spec.restartPolicy) spec.restartPolicy = "Always";
    if (spec.terminationGracePeriodSeconds === undefined) spec.terminationGracePeriodSeconds = 30;
    if (!spec.dnsPolicy) spec.dnsPolicy = "ClusterFirst";
    if (!spec.schedulerName) spec.schedulerName = "default-scheduler";
    if (!spec.securityContext) spec.securityContext = {};
    if (spec.enableServiceLinks === undefined) spec.enableServiceLinks = true;
    if (spec.preemptionPolicy === undefined) spec.preemptionPolicy = "PreemptLowerPriority";
    if (spec.priority === undefined) spec.priority = 0;
    if (!spec.serviceAccountName) spec.serviceAccountName = s(spec.serviceAccount) || "default";
    if (!spec.serviceAccount) spec.serviceAccount = spec.serviceAccountName;
    for (const c of [...arr(spec.containers), ...arr(spec.initContainers)]) {
      if (!c.terminationMessagePath) c.terminationMessagePath = "/dev/termination-log";
      if (!c.terminationMessagePolicy) c.terminationMessagePolicy = "File";
      if (!c.resources) c.resources = {};
      if (!c.imagePullPolicy) {
        const image = s(c.image);
        const tag = image.includes("@") ? "digest" : (image.split("/").pop() ?? "").split(":")[1];
        c.imagePullPolicy = tag === undefined || tag === "latest" ? "Always" : "IfNotPresent";
      }
      for (const p of arr(c.ports)) if (!p.protocol) p.protocol = "TCP";
    }
  },
  prepareForCreate: (o) => {
    o.status = { phase: "Pending", qosClass: "BestEffort" };
  },
  validate: (o, old) => {
    const errs: FieldError[] = [];
    const spec = asRecord(o.spec);
    const containers = arr(spec.containers);
    if (containers.length === 0) errs.push(fieldErrors.required("spec.containers"));
    const names = new Set<string>();
    for (const [field, list] of [
      ["spec.initContainers", arr(spec.initContainers)],
      ["spec.containers", containers],
    ] as const) {
      list.forEach((c, i) => {
        const f = `${field}[${i}]`;
        const name = s(c.name);
        if (!name) errs.push(fieldErrors.required(`${f}.name`));
        else {
          for (const m of dns1123Label(name)) errs.push(fieldErrors.invalid(`${f}.name`, name, m));
          if (names.has(name)) errs.push(fieldErrors.duplicate(`${f}.name`, name));
          names.add(name);
        }
        if (!s(c.image)) errs.push(fieldErrors.required(`${f}.image`));
        const policies = ["Always", "IfNotPresent", "Never"];
        if (c.imagePullPolicy !== undefined && !policies.includes(String(c.imagePullPolicy)))
          errs.push(fieldErrors.notSupported(`${f}.imagePullPolicy`, c.imagePullPolicy, policies));
        arr(c.ports).forEach((p, j) => {
          const port = p.containerPort;
          if (typeof port !== "number" || port < 1 || port > 65535)
            errs.push(
              fieldErrors.invalid(
                `${f}.ports[${j}].containerPort`,
                port ?? 0,
                "must be between 1 and 65535, inclusive",
              ),
            );
        });
      });
    }
    const restart = ["Always", "OnFailure", "Never"];
    if (!restart.includes(String(spec.restartPolicy)))
      errs.push(fieldErrors.notSupported("spec.restartPolicy", spec.restartPolicy, restart));
    if (old) {
      // Only the images, activeDeadlineSeconds and tolerations of a pod may change after creation.
      const strip = (p: KObject) => {
        const copy = JSON.parse(JSON.stringify(asRecord(p.spec))) as Record<string, unknown>;
        for (const c of [...arr(copy.containers), ...arr(copy.initContainers)]) delete c.image;
        delete copy.activeDeadlineSeconds;
        delete copy.tolerations;
        delete copy.terminationGracePeriodSeconds;
        delete copy.schedulingGates;
        return JSON.stringify(copy);
      };
      if (strip(o) !== strip(old))
        errs.push(
          fieldErrors.forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
          ),
        );
    }
    return errs;
  },
  columns: [
    col("Ready", "Ready containers / all containers."),
    col("Status", "The pod's phase or the reason it is in it."),
    col("Restarts", "Container restarts.", 0, "string"),
    AGE,
    col("IP", "The pod's IP address.", 1),
    col("Node", "The node the pod is bound to.", 1),
    col("Nominated Node", "The node the pod is nominated for.", 1),
    col("Readiness Gates", "Readiness gates that passed / all.", 1),
  ],
  cells: (o, now) => {
    const spec = asRecord(o.spec);
    const status = asRecord(o.status);
    const statuses = arr(status.containerStatuses);
    const ready = statuses.filter((c) => c.ready === true).length;
    const restarts = statuses.reduce((n, c) => n + (typeof c.restartCount === "number" ? c.restartCount : 0), 0);
    const gates = arr(spec.readinessGates);
    return [
      `${ready}/${arr(spec.containers).length}`,
      podStatusText(o),
      String(restarts),
      age(o, now),
      s(status.podIP) || "<none>",
      s(spec.nodeName) || "<none>",
      s(status.nominatedNodeName) || "<none>",
      gates.length === 0 ? "<none>" : `0/${gates.length}`,
    ];
  },
  fields: {
    "spec.nodeName": (o) => s(asRecord(o.spec).nodeName),
    "spec.restartPolicy": (o) => s(asRecord(o.spec).restartPolicy),
    "spec.schedulerName": (o) => s(asRecord(o.spec).schedulerName),
    "spec.serviceAccountName": (o) => s(asRecord(o.spec).serviceAccountName),
    "spec.hostNetwork": (o) => String(asRecord(o.spec).hostNetwork === true),
    "status.phase": (o) => s(asRecord(o.status).phase),
    "status.podIP": (o) => s(asRecord(o.status).podIP),
    "status.nominatedNodeName": (o) => s(asRecord(o.status).nominatedNodeName),
  },
};

function nodeReady(o: KObject): string {
  const conditions = arr(asRecord(o.status).conditions);
  const ready = conditions.find((c) => c.type === "Ready");
  let text = !ready ? "Unknown" : ready.status === "True" ? "Ready" : ready.status === "False" ? "NotReady" : "Unknown";
  if (asRecord(o.spec).unschedulable === true) text += ",SchedulingDisabled";
  return text;
}

function nodeRoles(o: KObject): string {
  const roles = Object.keys(asRecord(o.metadata.labels))
    .filter((k) => k.startsWith("node-role.kubernetes.io/"))
    .map((k) => k.slice("node-role.kubernetes.io/".length))
    .filter((r) => r.length > 0);
  return roles.length === 0 ? "<none>" : roles.sort().join(",");
}

function nodeAddress(o: KObject, type: string): string {
  const a = arr(asRecord(o.status).addresses).find((x) => x.type === type);
  return a ? s(a.address) : "<none>";
}

const nodes: ResourceType = {
  group: "",
  version: "v1",
  kind: "Node",
  plural: "nodes",
  singular: "node",
  namespaced: false,
  shortNames: ["no"],
  categories: [],
  storagePrefix: "minions",
  nameRule: "subdomain",
  schemaName: "io.k8s.api.core.v1.Node",
  description: "",
  statusSubresource: true,
  tracksGeneration: false,
  columns: [
    col("Status", "The node's readiness."),
    col("Roles", "The node's roles (node-role.kubernetes.io/* labels)."),
    AGE,
    col("Version", "The kubelet version."),
    col("Internal-IP", "The node's internal IP.", 1),
    col("External-IP", "The node's external IP.", 1),
    col("OS-Image", "The node's OS image.", 1),
    col("Kernel-Version", "The node's kernel version.", 1),
    col("Container-Runtime", "The node's container runtime.", 1),
  ],
  cells: (o, now) => {
    const info = asRecord(asRecord(o.status).nodeInfo);
    return [
      nodeReady(o),
      nodeRoles(o),
      age(o, now),
      s(info.kubeletVersion),
      nodeAddress(o, "InternalIP"),
      nodeAddress(o, "ExternalIP"),
      s(info.osImage) || "<unknown>",
      s(info.kernelVersion) || "<unknown>",
      s(info.containerRuntimeVersion) || "<unknown>",
    ];
  },
  fields: { "spec.unschedulable": (o) => String(asRecord(o.spec).unschedulable === true) },
};

function involved(o: KObject): Record<string, unknown> {
  return asRecord(o.involvedObject);
}

const events: ResourceType = {
  group: "",
  version: "v1",
  kind: "Event",
  plural: "events",
  singular: "event",
  namespaced: true,
  shortNames: ["ev"],
  categories: [],
  storagePrefix: "events",
  nameRule: "path-segment",
  schemaName: "io.k8s.api.core.v1.Event",
  description: "",
  statusSubresource: false,
  tracksGeneration: false,
  validate: (o) => {
    const errs: FieldError[] = [];
    const inv = involved(o);
    const ns = s(inv.namespace);
    if (ns && ns !== o.metadata.namespace)
      errs.push(fieldErrors.invalid("involvedObject.namespace", ns, "does not match event.namespace"));
    const type = o.type;
    if (type !== undefined && type !== "Normal" && type !== "Warning")
      errs.push(fieldErrors.notSupported("type", type, ["Normal", "Warning"]));
    return errs;
  },
  columns: [
    col("Last Seen", "Time since the event last occurred."),
    col("Type", "Normal or Warning."),
    col("Reason", "Why the event happened."),
    col("Object", "The object the event is about."),
    col("Subobject", "The part of the object.", 1),
    col("Source", "Who reported the event.", 1),
    col("Message", "What happened."),
    col("First Seen", "Time since the event first occurred.", 1),
    col("Count", "How many times it occurred.", 1, "integer"),
    col("Name", "The event's name.", 1),
  ],
  cells: (o, now) => {
    const inv = involved(o);
    const last = s(o.lastTimestamp) || s(o.eventTime) || s(o.metadata.creationTimestamp);
    const first = s(o.firstTimestamp) || s(o.eventTime) || s(o.metadata.creationTimestamp);
    const since = (t: string) => (t ? humanDuration(now - Date.parse(t)) : "<unknown>");
    const source = asRecord(o.source);
    return [
      since(last),
      s(o.type),
      s(o.reason),
      `${s(inv.kind).toLowerCase()}/${s(inv.name)}`,
      s(inv.fieldPath),
      [s(source.component) || s(o.reportingComponent), s(source.host)].filter(Boolean).join(", "),
      s(o.message),
      since(first),
      typeof o.count === "number" ? o.count : 1,
      s(o.metadata.name),
    ];
  },
  fields: {
    "involvedObject.kind": (o) => s(involved(o).kind),
    "involvedObject.namespace": (o) => s(involved(o).namespace),
    "involvedObject.name": (o) => s(involved(o).name),
    "involvedObject.uid": (o) => s(involved(o).uid),
    "involvedObject.apiVersion": (o) => s(involved(o).apiVersion),
    "involvedObject.resourceVersion": (o) => s(involved(o).resourceVersion),
    "involvedObject.fieldPath": (o) => s(involved(o).fieldPath),
    reason: (o) => s(o.reason),
    reportingComponent: (o) => s(o.reportingComponent),
    source: (o) => s(asRecord(o.source).component),
    type: (o) => s(o.type),
  },
};

const serviceaccounts: ResourceType = {
  group: "",
  version: "v1",
  kind: "ServiceAccount",
  plural: "serviceaccounts",
  singular: "serviceaccount",
  namespaced: true,
  shortNames: ["sa"],
  categories: [],
  storagePrefix: "serviceaccounts",
  nameRule: "subdomain",
  schemaName: "io.k8s.api.core.v1.ServiceAccount",
  description: "",
  statusSubresource: false,
  tracksGeneration: false,
  columns: [col("Secrets", "Number of secrets the account lists.", 0, "integer"), AGE],
  cells: (o, now) => [arr(o.secrets).length, age(o, now)],
};

const leases: ResourceType = {
  group: "coordination.k8s.io",
  version: "v1",
  kind: "Lease",
  plural: "leases",
  singular: "lease",
  namespaced: true,
  shortNames: [],
  categories: [],
  storagePrefix: "leases",
  nameRule: "subdomain",
  schemaName: "io.k8s.api.coordination.v1.Lease",
  description: "",
  statusSubresource: false,
  tracksGeneration: false,
  validate: (o) => {
    const d = asRecord(o.spec).leaseDurationSeconds;
    return d !== undefined && (typeof d !== "number" || d <= 0)
      ? [fieldErrors.invalid("spec.leaseDurationSeconds", d, "must be greater than 0")]
      : [];
  },
  columns: [col("Holder", "The lease's current holder."), AGE],
  cells: (o, now) => [s(asRecord(o.spec).holderIdentity), age(o, now)],
};

export const RESOURCES: readonly ResourceType[] = [
  namespaces,
  configmaps,
  secrets,
  services,
  pods,
  nodes,
  events,
  serviceaccounts,
  leases,
];

export function groupVersion(r: { group: string; version: string }): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** The types served under one group/version, e.g. "" + "v1" or "coordination.k8s.io" + "v1". */
export function resourcesOf(group: string, version: string): ResourceType[] {
  return RESOURCES.filter((r) => r.group === group && r.version === version);
}

export function findResource(group: string, version: string, plural: string): ResourceType | undefined {
  return RESOURCES.find((r) => r.group === group && r.version === version && r.plural === plural);
}

/** The group/versions served, core first. */
export function groupVersions(): { group: string; version: string }[] {
  const seen = new Map<string, { group: string; version: string }>();
  for (const r of RESOURCES) seen.set(`${r.group}/${r.version}`, { group: r.group, version: r.version });
  return [...seen.values()];
}

export function schemaOf(r: ResourceType): Schema {
  const s = DEFINITIONS.get(r.schemaName);
  if (!s) throw new Error(`no schema ${r.schemaName}`);
  return s;
}

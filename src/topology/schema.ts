import { z } from "zod";

/**
 * The topology file: a versioned, strict schema (unknown fields are errors), as kind versions its
 * cluster config. `apiVersion` + `kind: Topology` name the format; everything but the placement
 * of the store has a default (see defaults.ts).
 *
 *     apiVersion: lab.dev/v1alpha1
 *     kind: Topology
 *     name: stacked-ha
 *     controlPlane: { count: 3 }
 *     etcd: { placement: stacked }
 */

export const API_VERSION = "lab.dev/v1alpha1";

const GO_DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^0$/;
const duration = (what: string) =>
  z.string().regex(GO_DURATION, { message: `${what} must be a duration such as "30s", "5m" or "1h30m"` });

const count = (what: string) =>
  z
    .number({ message: `${what} must be a whole number` })
    .int({ message: `${what} must be a whole number` })
    .min(1, { message: `${what} must be at least 1` })
    .max(7, { message: `${what} must be at most 7 (etcd recommends 3 or 5 members; more slows every write)` });

export const TopologySchema = z
  .strictObject({
    apiVersion: z.literal(API_VERSION, { message: `apiVersion must be "${API_VERSION}"` }),
    kind: z.literal("Topology", { message: 'kind must be "Topology"' }),
    name: z
      .string()
      .max(40, { message: "name must be at most 40 characters (it prefixes container names)" })
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, {
        message: "name must be lower-case letters, digits and '-', starting and ending with a letter or digit",
      }),
    description: z.string().optional(),
    controlPlane: z
      .strictObject({
        count: count("controlPlane.count").optional(),
      })
      .optional(),
    etcd: z.strictObject({
      placement: z.enum(["stacked", "external"], {
        message:
          'etcd.placement must be "stacked" (a member on each control-plane host) or "external" (dedicated hosts)',
      }),
      members: count("etcd.members").optional(),
      heartbeatIntervalMs: z.number().int().min(10).max(10_000).optional(),
      electionTimeoutMs: z.number().int().min(50).max(50_000).optional(),
      quotaBackendBytes: z
        .number()
        .int()
        .min(1024 * 1024, { message: "etcd.quotaBackendBytes must be at least 1 MiB" })
        .max(8 * 1024 ** 3, { message: "etcd.quotaBackendBytes must be at most 8 GiB (etcd's limit)" })
        .optional(),
      snapshotCount: z.number().int().min(1).optional(),
      autoCompaction: z
        .strictObject({
          mode: z.enum(["periodic", "revision"], {
            message: 'etcd.autoCompaction.mode must be "periodic" or "revision"',
          }),
          retention: z.string().min(1),
        })
        .optional(),
    }),
    apiServer: z
      .strictObject({
        eventTTL: duration("apiServer.eventTTL").optional(),
        compactionInterval: duration("apiServer.compactionInterval").optional(),
      })
      .optional(),
    loadBalancer: z
      .strictObject({
        enabled: z.boolean().optional(),
      })
      .optional(),
    ports: z
      .strictObject({
        apiServer: z
          .number()
          .int()
          .min(1, { message: "ports.apiServer must be a port from 1 to 65535" })
          .max(65535, { message: "ports.apiServer must be a port from 1 to 65535" })
          .optional(),
      })
      .optional(),
  })
  .describe("A lab topology: where the store members and API servers run.");

export type TopologyInput = z.infer<typeof TopologySchema>;

/** The topology with every default filled in: what the renderer consumes. */
export interface Topology {
  readonly apiVersion: typeof API_VERSION;
  readonly kind: "Topology";
  readonly name: string;
  readonly description: string;
  readonly controlPlane: { readonly count: number };
  readonly etcd: {
    readonly placement: "stacked" | "external";
    readonly members: number;
    readonly heartbeatIntervalMs: number;
    readonly electionTimeoutMs: number;
    readonly quotaBackendBytes: number;
    readonly snapshotCount: number;
    readonly autoCompaction: { readonly mode: "periodic" | "revision"; readonly retention: string } | undefined;
  };
  readonly apiServer: { readonly eventTTL: string; readonly compactionInterval: string };
  readonly loadBalancer: { readonly enabled: boolean };
  readonly ports: { readonly apiServer: number };
}

/** JSON Schema of the topology file, for editors (yaml-language-server and the like). */
export function topologyJsonSchema(): Record<string, unknown> {
  return {
    ...(z.toJSONSchema(TopologySchema) as Record<string, unknown>),
    $id: "https://lab.dev/schemas/topology-v1alpha1.json",
    title: "lab topology",
  };
}

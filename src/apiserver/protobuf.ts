import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { errors } from "./status.js";

/**
 * Decodes Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`): the magic
 * "k8s\0", a runtime.Unknown envelope naming apiVersion and kind, and the typed object inside.
 * Responses stay JSON (client-go accepts JSON whenever it offers protobuf). Only the kinds that
 * kubectl's typed `create` commands send are decoded; others get 415 with what to send instead.
 */

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);
const PROTO_FILE = fileURLToPath(new URL("./proto/k8s.proto", import.meta.url));
export const PROTOBUF_KINDS = ["Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "DeleteOptions"];

let root: protobuf.Root | undefined;

function types(): protobuf.Root {
  root ??= protobuf.loadSync(PROTO_FILE);
  return root;
}

/** Kubernetes' JSON forms for the few messages whose JSON is not their field layout. */
function normalize(typeName: string, value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  if (typeName === "Time") {
    const seconds = Number((value as { seconds?: unknown }).seconds ?? 0);
    // A zero time is Go's "unset" (the marshaler writes it anyway).
    return seconds === 0 ? undefined : `${new Date(seconds * 1000).toISOString().slice(0, 19)}Z`;
  }
  if (typeName === "IntOrString") {
    // type is an int64: protobufjs may hand it over as a Long.
    const v = value as { type?: unknown; intVal?: unknown; strVal?: string };
    return Number(v.type ?? 0) === 1 ? (v.strVal ?? "") : Number(v.intVal ?? 0);
  }
  return value;
}

function convert(type: protobuf.Type, message: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(message)) {
    const field = type.fields[name];
    if (!field) continue;
    field.resolve();
    const nested = field.resolvedType instanceof protobuf.Type ? field.resolvedType : undefined;
    const one = (v: unknown): unknown => {
      if (nested)
        return normalize(
          nested.name,
          nested.name === "Time" || nested.name === "IntOrString" ? v : convert(nested, v as Record<string, unknown>),
        );
      if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString("base64");
      if (typeof v === "object" && v !== null && typeof (v as { toNumber?: () => number }).toNumber === "function")
        return (v as { toNumber: () => number }).toNumber();
      return v;
    };
    let converted: unknown;
    if (field.map) {
      const m: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) m[k] = one(v);
      converted = m;
    } else if (field.repeated) converted = (value as unknown[]).map(one);
    else converted = one(value);
    if (!isEmpty(converted)) out[name] = converted;
  }
  return out;
}

/**
 * Go's generated marshalers write every non-pointer field, empty or not, so an empty string,
 * zero, empty list or empty map on the wire means "not set" (JSON would have omitted it).
 * Booleans stay: the optional ones are pointers, sent only when set.
 */
function isEmpty(v: unknown): boolean {
  if (v === "" || v === 0 || v === undefined || v === null) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object") return Object.keys(v as object).length === 0;
  return false;
}

export function decodeProtobufBody(body: Buffer): Record<string, unknown> {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC))
    throw errors.badRequest('the protobuf body does not start with the Kubernetes magic "k8s\\0"');
  const r = types();
  let kind = "";
  let apiVersion = "";
  try {
    const envelope = r.lookupType("lab.k8s.Unknown").decode(body.subarray(4)) as unknown as {
      typeMeta?: { apiVersion?: string; kind?: string };
      raw?: Uint8Array;
    };
    kind = envelope.typeMeta?.kind ?? "";
    apiVersion = envelope.typeMeta?.apiVersion ?? "";
    if (!PROTOBUF_KINDS.includes(kind))
      throw errors.unsupportedMediaType(`application/vnd.kubernetes.protobuf (${kind || "no kind"})`, [
        "application/json",
        "application/yaml",
        `application/vnd.kubernetes.protobuf for ${PROTOBUF_KINDS.join(", ")}`,
      ]);
    const type = r.lookupType(`lab.k8s.${kind}`);
    const message = type.decode(envelope.raw ?? new Uint8Array()) as unknown as Record<string, unknown>;
    return { apiVersion, kind, ...convert(type, message) };
  } catch (e) {
    if (e instanceof Error && e.name === "ApiError") throw e;
    throw errors.badRequest(`the protobuf body of kind ${kind || "?"} could not be decoded: ${(e as Error).message}`);
  }
}

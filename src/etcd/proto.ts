import { fileURLToPath } from "node:url";
import type * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { decodePutCommand, decodePutRequest, encodePutCommand, encodePutResponse } from "./put-codec.js";
import type { InternalRequest } from "./wire.js";

/**
 * Loads our .proto declarations (wire-compatible with etcd 3.4) once, for the gRPC services and
 * for encoding the log's internal commands. The .proto files sit beside this module (the build
 * copies them into dist/).
 *
 * The gRPC service definitions are built here straight from the parsed protobufjs root, the way
 * @grpc/proto-loader builds them (same conversion options, same method paths and names), minus the
 * reflection descriptors it also generates, which nothing here uses and which cost every member,
 * API server and CLI call tens of milliseconds of startup CPU.
 */

export const PROTO_DIR = fileURLToPath(new URL("./proto/", import.meta.url));

const FILES = ["etcdserverpb/rpc.proto", "grpc/health/v1/health.proto", "labpb/internal.proto"];

/** The conversion options used on both paths, so logged and live requests have one shape. */
export const CONVERSION = { keepCase: true, longs: String, enums: Number, defaults: true, oneofs: true } as const;

let cachedRoot: protobuf.Root | undefined;

/** Every message and service of our .proto files, parsed once. */
function protoRoot(): protobuf.Root {
  if (!cachedRoot) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith("/") ? target : PROTO_DIR + target);
    root.loadSync(FILES, { keepCase: true });
    root.resolveAll();
    keepResponseHeaderIds(root.lookupType("etcdserverpb.ResponseHeader"));
    cachedRoot = root;
  }
  return cachedRoot;
}

const UINT64_DECIMAL = /^\d{1,20}$/;
const HEADER_FIELDS = ["cluster_id", "member_id", "revision", "raft_term"] as const;

/** What protobufjs' writer reads of a 64-bit integer given as an object (a Long). */
interface LongLike {
  readonly low: number;
  readonly high: number;
  readonly unsigned: boolean;
}

/**
 * Every response carries a ResponseHeader whose cluster and member IDs arrive as decimal strings
 * (CONVERSION's `longs: String`), and protobufjs' generated fromObject turns each into a Long
 * digit by digit, for every answer. The IDs hardly ever change, so their Longs are kept here;
 * revisions and terms arrive as numbers, which protobufjs' writer encodes as they are. Any other
 * shape goes through the generated conversion. Installed once per parsed root: a parent message's
 * generated fromObject calls its field type's `fromObject` property.
 */
function keepResponseHeaderIds(type: protobuf.Type): void {
  type.setup();
  const generated = type.fromObject.bind(type);
  const ids = new Map<string, LongLike>();
  /** A decimal uint64 as the low and high words protobufjs' writer reads, or undefined. */
  const idOf = (text: string): LongLike | undefined => {
    let id = ids.get(text);
    if (id === undefined) {
      if (!UINT64_DECIMAL.test(text) || BigInt(text) > 0xffffffffffffffffn) return undefined;
      if (ids.size >= 16) ids.clear(); // the IDs of a member and its cluster: never grows without bound
      const value = BigInt(text);
      id = { low: Number(value & 0xffffffffn) | 0, high: Number(value >> 32n) | 0, unsigned: true };
      ids.set(text, id);
    }
    return id;
  };
  type.fromObject = (object: Record<string, unknown>): protobuf.Message => {
    const out: Record<string, unknown> = {};
    for (const name of HEADER_FIELDS) {
      const v = object[name];
      if (v === undefined || v === null) continue;
      const fast =
        typeof v === "number" && Number.isSafeInteger(v) && v >= 0
          ? v
          : typeof v === "string" && name !== "revision"
            ? idOf(v)
            : undefined;
      if (fast === undefined) return generated(object);
      out[name] = fast;
    }
    return out as unknown as protobuf.Message;
  };
}

function serializer(type: protobuf.Type): grpc.serialize<object> {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`cannot serialize an array as ${type.name}`);
    const bytes = type.encode(type.fromObject(value)).finish();
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(type: protobuf.Type): grpc.deserialize<object> {
  return (bytes) => type.toObject(type.decode(bytes), CONVERSION);
}

/** Puts, most of a store's requests, decoded directly (put-codec.ts), and the generic way otherwise. */
function putDeserializer(type: protobuf.Type): grpc.deserialize<object> {
  const generic = deserializer(type);
  return (bytes) => decodePutRequest(bytes) ?? generic(bytes);
}

function putResponseSerializer(type: protobuf.Type): grpc.serialize<object> {
  const generic = serializer(type);
  return (value) => encodePutResponse(value) ?? generic(value);
}

/** "HashKV" → "hashKv", as gRPC's loader names the lower-case alias of each method. */
function lowerCamel(name: string): string {
  const words = name.match(/[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+/g) ?? [name];
  return words
    .map((w, i) => (i === 0 ? w.toLowerCase() : (w[0] ?? "").toUpperCase() + w.slice(1).toLowerCase()))
    .join("");
}

const definitions = new Map<string, grpc.ServiceDefinition>();

/**
 * The method definitions of a service such as "etcdserverpb.KV" (paths, streaming flags,
 * serializers), as grpc-js's makeClientConstructor and our server's addService take them. Kept
 * free of grpc-js at run time: a store member serves these without loading it (./proto-client.ts
 * makes client constructors from them).
 */
export function serviceDefinitionOf(name: string): grpc.ServiceDefinition {
  let definition = definitions.get(name);
  if (definition === undefined) {
    const service = protoRoot().lookup(name);
    if (!(service instanceof protobuf.Service)) throw new Error(`no gRPC service ${name} in our protos`);
    const methods: Record<string, grpc.MethodDefinition<object, object>> = {};
    for (const method of service.methodsArray) {
      const request = method.resolvedRequestType as protobuf.Type;
      const response = method.resolvedResponseType as protobuf.Type;
      methods[method.name] = {
        path: `/${name}/${method.name}`,
        requestStream: method.requestStream === true,
        responseStream: method.responseStream === true,
        requestSerialize: serializer(request),
        requestDeserialize:
          request.fullName === ".etcdserverpb.PutRequest" ? putDeserializer(request) : deserializer(request),
        responseSerialize:
          response.fullName === ".etcdserverpb.PutResponse" ? putResponseSerializer(response) : serializer(response),
        responseDeserialize: deserializer(response),
        originalName: lowerCamel(method.name),
      };
    }
    definition = methods;
    definitions.set(name, definition);
  }
  return definition;
}

let internalType: protobuf.Type | undefined;

function internal(): protobuf.Type {
  if (!internalType) {
    internalType = protoRoot().lookupType("labpb.InternalRequest");
  }
  return internalType;
}

/**
 * Encodes a log command the way etcd marshals its own (gogo protobuf): default-valued fields are
 * left out. Requests arrive decoded with every default filled in (CONVERSION's `defaults`), and
 * encoding those too made each entry a few bytes larger than etcd's, enough to refuse requests
 * within a few bytes of --max-request-bytes that etcd accepts. Decoding restores the defaults.
 */
export function encodeInternal(req: InternalRequest): Buffer {
  return encodePutCommand(req) ?? encodeInternalByReflection(req);
}

/** encodeInternal through protobufjs' reflection, for every request (put-codec.ts agrees on puts). */
export function encodeInternalByReflection(req: InternalRequest): Buffer {
  const t = internal();
  const bytes = t.encode(t.fromObject(withoutDefaults(t, req as unknown as Record<string, unknown>))).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A copy of `value` (a message of `type`) holding only fields whose value is not the default. */
function withoutDefaults(type: protobuf.Type, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    const v = value[field.name];
    if (v === undefined || v === null) continue;
    const nested = field.resolvedType instanceof protobuf.Type ? field.resolvedType : undefined;
    if (field.repeated) {
      if (!Array.isArray(v) || v.length === 0) continue;
      out[field.name] = nested ? v.map((item) => withoutDefaults(nested, item as Record<string, unknown>)) : v;
      continue;
    }
    if (field.map) {
      if (Object.keys(v as object).length > 0) out[field.name] = v;
      continue;
    }
    if (nested) {
      out[field.name] = withoutDefaults(nested, v as Record<string, unknown>);
      continue;
    }
    // A oneof member counts by its presence, default value or not (as on the wire).
    if (field.partOf !== null || !isDefaultScalar(field, v)) out[field.name] = v;
  }
  return out;
}

const LONG_TYPES = new Set(["int64", "uint64", "sint64", "fixed64", "sfixed64"]);

/** Whether a scalar (or enum) field holds its proto3 default, judged by the field's own type. */
function isDefaultScalar(field: protobuf.Field, v: unknown): boolean {
  if (field.type === "string") return v === "";
  if (field.type === "bytes") return v instanceof Uint8Array && v.length === 0;
  if (field.type === "bool") return v === false;
  if (LONG_TYPES.has(field.type)) {
    if (typeof v === "string") return v === "0";
    if (typeof v === "number") return v === 0;
    if (typeof v === "bigint") return v === 0n;
    const long = v as { low?: number; high?: number };
    return long.low === 0 && long.high === 0;
  }
  // 32-bit integers, floats and enums (CONVERSION gives enums as numbers).
  return v === 0;
}

export function decodeInternal(data: Buffer): InternalRequest {
  return decodePutCommand(data) ?? decodeInternalByReflection(data);
}

/** decodeInternal through protobufjs' reflection, for every command (put-codec.ts agrees on puts). */
export function decodeInternalByReflection(data: Buffer): InternalRequest {
  const t = internal();
  return t.toObject(t.decode(data), { ...CONVERSION }) as unknown as InternalRequest;
}

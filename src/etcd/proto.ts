import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
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
    cachedRoot = root;
  }
  return cachedRoot;
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

/** "HashKV" → "hashKv", as gRPC's loader names the lower-case alias of each method. */
function lowerCamel(name: string): string {
  const words = name.match(/[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+/g) ?? [name];
  return words
    .map((w, i) => (i === 0 ? w.toLowerCase() : (w[0] ?? "").toUpperCase() + w.slice(1).toLowerCase()))
    .join("");
}

const services = new Map<string, grpc.ServiceClientConstructor>();

/** Looks up a service constructor such as "etcdserverpb.KV". */
export function serviceOf(name: string): grpc.ServiceClientConstructor {
  let ctor = services.get(name);
  if (ctor === undefined) {
    const service = protoRoot().lookup(name);
    if (!(service instanceof protobuf.Service)) throw new Error(`no gRPC service ${name} in our protos`);
    const definition: Record<string, grpc.MethodDefinition<object, object>> = {};
    for (const method of service.methodsArray) {
      const request = method.resolvedRequestType as protobuf.Type;
      const response = method.resolvedResponseType as protobuf.Type;
      definition[method.name] = {
        path: `/${name}/${method.name}`,
        requestStream: method.requestStream === true,
        responseStream: method.responseStream === true,
        requestSerialize: serializer(request),
        requestDeserialize: deserializer(request),
        responseSerialize: serializer(response),
        responseDeserialize: deserializer(response),
        originalName: lowerCamel(method.name),
      };
    }
    ctor = grpc.makeClientConstructor(definition, name.slice(name.lastIndexOf(".") + 1));
    services.set(name, ctor);
  }
  return ctor;
}

let internalType: protobuf.Type | undefined;

function internal(): protobuf.Type {
  if (!internalType) {
    internalType = protoRoot().lookupType("labpb.InternalRequest");
  }
  return internalType;
}

export function encodeInternal(req: InternalRequest): Buffer {
  const t = internal();
  const bytes = t.encode(t.fromObject(req)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeInternal(data: Buffer): InternalRequest {
  const t = internal();
  return t.toObject(t.decode(data), { ...CONVERSION }) as unknown as InternalRequest;
}

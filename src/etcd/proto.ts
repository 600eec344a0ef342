import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import type { InternalRequest } from "./wire.js";

/**
 * Loads our .proto declarations (wire-compatible with etcd 3.4) once, for the gRPC services and
 * for encoding the log's internal commands. The .proto files sit beside this module (the build
 * copies them into dist/).
 */

export const PROTO_DIR = fileURLToPath(new URL("./proto/", import.meta.url));

const FILES = ["etcdserverpb/rpc.proto", "grpc/health/v1/health.proto", "labpb/internal.proto"];

/** The conversion options used on both paths, so logged and live requests have one shape. */
export const CONVERSION = { keepCase: true, longs: String, enums: Number, defaults: true, oneofs: true } as const;

let cachedGrpc: grpc.GrpcObject | undefined;

export function grpcPackage(): grpc.GrpcObject {
  if (!cachedGrpc) {
    const def = protoLoader.loadSync(FILES, { ...CONVERSION, includeDirs: [PROTO_DIR] });
    cachedGrpc = grpc.loadPackageDefinition(def);
  }
  return cachedGrpc;
}

/** Looks up a service constructor such as "etcdserverpb.KV". */
export function serviceOf(name: string): grpc.ServiceClientConstructor {
  let node: unknown = grpcPackage();
  for (const part of name.split(".")) node = (node as Record<string, unknown>)[part];
  if (typeof node !== "function") throw new Error(`no gRPC service ${name} in our protos`);
  return node as grpc.ServiceClientConstructor;
}

let internalType: protobuf.Type | undefined;

function internal(): protobuf.Type {
  if (!internalType) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith("/") ? target : PROTO_DIR + target);
    root.loadSync("labpb/internal.proto", { keepCase: true });
    internalType = root.lookupType("labpb.InternalRequest");
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

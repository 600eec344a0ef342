import * as grpc from "@grpc/grpc-js";
import { serviceDefinitionOf } from "./proto.js";

const constructors = new Map<string, grpc.ServiceClientConstructor>();

/**
 * A grpc-js client constructor for one of our services, such as "etcdserverpb.KV", built from
 * our .proto declarations (for the API server's store client, the CLI and the tests).
 */
export function serviceOf(name: string): grpc.ServiceClientConstructor {
  let ctor = constructors.get(name);
  if (ctor === undefined) {
    ctor = grpc.makeClientConstructor(serviceDefinitionOf(name), name.slice(name.lastIndexOf(".") + 1));
    constructors.set(name, ctor);
  }
  return ctor;
}

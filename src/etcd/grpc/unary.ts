import type * as grpc from "@grpc/grpc-js";
import { serviceError } from "./errors.js";

/**
 * Wraps a handler as a gRPC unary method: sync or async results become the reply, thrown errors
 * go through the error table. A handler bug never crashes the member; it answers INTERNAL. (The
 * gRPC server counts every call and its status for /metrics.)
 */
export function unary<Req>(
  handler: (req: Req, call: grpc.ServerUnaryCall<Req, unknown>) => object | Promise<object>,
): grpc.handleUnaryCall<Req, unknown> {
  return (call, callback) => {
    let result: object | Promise<object>;
    try {
      result = handler(call.request, call);
    } catch (err) {
      callback(serviceError(err));
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (value) => callback(null, value),
        (err: unknown) => callback(serviceError(err)),
      );
    } else callback(null, result);
  };
}

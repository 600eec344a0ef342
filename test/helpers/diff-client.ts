import * as grpc from "@grpc/grpc-js";
import { serviceOf } from "../../src/etcd/proto-client.js";

/**
 * Raw unary calls to etcd's KV and Lease services over grpc-js with our own protos, for the
 * differential tests: any request shape goes out as given (including combinations a typed client
 * would not build), and every answer comes back as an Outcome, a response or a gRPC status, never
 * a rejection. (test/helpers/grpc-client.ts is the typed client for ordinary use.)
 */

export type Outcome =
  | { readonly ok: Record<string, unknown> }
  | { readonly error: { readonly code: number; readonly details: string } };

export type KvMethod = "Range" | "Put" | "DeleteRange" | "Txn" | "Compact";
export type LeaseMethod = "LeaseGrant" | "LeaseRevoke" | "LeaseTimeToLive" | "LeaseLeases";

type Unary = (
  req: object,
  options: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => void;

export interface RawClient {
  readonly endpoint: string;
  kv(method: KvMethod, req: object): Promise<Outcome>;
  lease(method: LeaseMethod, req: object): Promise<Outcome>;
  close(): void;
}

function invoke(client: grpc.Client, method: string, req: object, deadlineMs: number): Promise<Outcome> {
  const fn = (client as unknown as Record<string, Unary>)[method];
  if (!fn) throw new Error(`no gRPC method ${method}`);
  return new Promise((resolve) => {
    fn.call(client, req, { deadline: Date.now() + deadlineMs }, (err, res) => {
      if (err) resolve({ error: { code: err.code, details: err.details } });
      else resolve({ ok: res as Record<string, unknown> });
    });
  });
}

export function connectRaw(endpoint: string, deadlineMs = 20_000): RawClient {
  const creds = grpc.credentials.createInsecure();
  const options: grpc.ClientOptions = {
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
    "grpc.use_local_subchannel_pool": 1,
  };
  const kv = new (serviceOf("etcdserverpb.KV"))(endpoint, creds, options);
  const lease = new (serviceOf("etcdserverpb.Lease"))(endpoint, creds, {
    ...options,
    channelOverride: kv.getChannel(),
  });
  return {
    endpoint,
    kv: (method, req) => invoke(kv, method, req, deadlineMs),
    lease: (method, req) => invoke(lease, method, req, deadlineMs),
    close: () => {
      kv.close();
      lease.close();
    },
  };
}

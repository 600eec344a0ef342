/**
 * The shapes of etcd's protobuf messages as our gRPC service definitions (src/etcd/proto.ts)
 * hand them to us and take them back (keepCase, int64 as decimal strings on input, enums as numbers, defaults filled in). Only
 * the fields the server reads or writes are declared. Outgoing int64 fields may be numbers
 * (revisions stay far below 2^53) or decimal strings (64-bit IDs).
 */

export type Int64In = string;
export type Int64Out = number | string;

export interface ResponseHeader {
  cluster_id: Int64Out;
  member_id: Int64Out;
  revision: Int64Out;
  raft_term: Int64Out;
}

export interface KeyValueMsg {
  key: Buffer;
  create_revision: Int64Out;
  mod_revision: Int64Out;
  version: Int64Out;
  value: Buffer;
  lease: Int64Out;
}

export const SortOrder = { NONE: 0, ASCEND: 1, DESCEND: 2 } as const;
export const SortTarget = { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 } as const;
export const CompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;
export const CompareTarget = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;
export const AlarmAction = { GET: 0, ACTIVATE: 1, DEACTIVATE: 2 } as const;
export const AlarmType = { NONE: 0, NOSPACE: 1, CORRUPT: 2 } as const;
export const FilterType = { NOPUT: 0, NODELETE: 1 } as const;

export interface RangeRequest {
  key: Buffer;
  range_end: Buffer;
  limit: Int64In;
  revision: Int64In;
  sort_order: number;
  sort_target: number;
  serializable: boolean;
  keys_only: boolean;
  count_only: boolean;
  min_mod_revision: Int64In;
  max_mod_revision: Int64In;
  min_create_revision: Int64In;
  max_create_revision: Int64In;
}

export interface RangeResponse {
  header?: ResponseHeader;
  kvs: KeyValueMsg[];
  more: boolean;
  count: Int64Out;
}

export interface PutRequest {
  key: Buffer;
  value: Buffer;
  lease: Int64In;
  prev_kv: boolean;
  ignore_value: boolean;
  ignore_lease: boolean;
}

export interface PutResponse {
  header?: ResponseHeader;
  prev_kv?: KeyValueMsg;
}

export interface DeleteRangeRequest {
  key: Buffer;
  range_end: Buffer;
  prev_kv: boolean;
}

export interface DeleteRangeResponse {
  header?: ResponseHeader;
  deleted: Int64Out;
  prev_kvs: KeyValueMsg[];
}

export interface RequestOp {
  request?: "request_range" | "request_put" | "request_delete_range" | "request_txn";
  request_range?: RangeRequest | null;
  request_put?: PutRequest | null;
  request_delete_range?: DeleteRangeRequest | null;
  request_txn?: TxnRequest | null;
}

export type ResponseOp =
  | { response_range: RangeResponse }
  | { response_put: PutResponse }
  | { response_delete_range: DeleteRangeResponse }
  | { response_txn: TxnResponse };

export interface Compare {
  result: number;
  target: number;
  key: Buffer;
  target_union?: "version" | "create_revision" | "mod_revision" | "value" | "lease";
  version?: Int64In;
  create_revision?: Int64In;
  mod_revision?: Int64In;
  value?: Buffer;
  lease?: Int64In;
  range_end: Buffer;
}

export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

export interface TxnResponse {
  header?: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface CompactionRequest {
  revision: Int64In;
  physical: boolean;
}

export interface LeaseGrantRequest {
  TTL: Int64In;
  ID: Int64In;
}

export interface LeaseRevokeRequest {
  ID: Int64In;
}

export interface AlarmRequest {
  action: number;
  memberID: Int64In;
  alarm: number;
}

export interface AlarmMember {
  memberID: Int64Out;
  alarm: number;
}

export interface LeaseCheckpointRequest {
  checkpoints: { ID: Int64In; remaining_TTL: Int64In }[];
}

/** One state-machine command (labpb.InternalRequest). Exactly one request field is set. */
export interface InternalRequest {
  id: Int64In;
  put?: PutRequest | null;
  delete_range?: DeleteRangeRequest | null;
  txn?: TxnRequest | null;
  compaction?: CompactionRequest | null;
  lease_grant?: LeaseGrantRequest | null;
  lease_revoke?: LeaseRevokeRequest | null;
  alarm?: AlarmRequest | null;
  lease_checkpoint?: LeaseCheckpointRequest | null;
  member_attributes?: { id: Int64In; name: string; client_urls: string[] } | null;
  member_peer_urls?: { id: Int64In; peer_urls: string[] } | null;
}

export function int(v: Int64In | number | undefined | null): number {
  if (v === undefined || v === null || v === "") return 0;
  return typeof v === "number" ? v : Number(v);
}

export function bigint(v: Int64In | number | undefined | null): bigint {
  // Most IDs and leases on the wire are 0: one shared 0n instead of a new BigInt each time (a
  // revision record keeps its lease for as long as the revision lives).
  if (v === undefined || v === null || v === "" || v === "0" || v === 0) return 0n;
  return BigInt(v);
}

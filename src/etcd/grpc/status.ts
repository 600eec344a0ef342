/**
 * gRPC's canonical status codes (the numbers every gRPC implementation puts in `grpc-status`).
 * The member's server side uses these instead of @grpc/grpc-js's enum, so that a store member
 * never loads that library: it serves gRPC through its own HTTP/2 code (./h2/), and grpc-js took
 * ~100 ms of every member start to load (it stays the client library of the API server and CLI).
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/**
 * A call's request metadata (its custom headers), keyed by lower-case name; `-bin` headers hold
 * bytes (base64 on the wire), the rest strings. The part of grpc-js's Metadata a handler reads.
 */
export class CallMetadata {
  private readonly entries = new Map<string, Array<string | Buffer>>();

  add(key: string, value: string | Buffer): void {
    const name = key.toLowerCase();
    const values = this.entries.get(name);
    if (values) values.push(value);
    else this.entries.set(name, [value]);
  }

  /** Every value of `key`, in the order received; empty when absent. */
  get(key: string): Array<string | Buffer> {
    return [...(this.entries.get(key.toLowerCase()) ?? [])];
  }
}

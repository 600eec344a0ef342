/**
 * Kubernetes `Status` errors: the codes, reasons and message shapes that kube-apiserver returns,
 * so kubectl prints what users know (`Error from server (NotFound): configmaps "x" not found`).
 * Handlers throw `ApiError`; the HTTP edge turns it into a Status body (the one place that does).
 */

export interface StatusCause {
  readonly reason: string;
  readonly message: string;
  readonly field?: string;
}

export interface StatusDetails {
  readonly name?: string;
  readonly group?: string;
  readonly kind?: string;
  readonly uid?: string;
  readonly causes?: readonly StatusCause[];
  readonly retryAfterSeconds?: number;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
    this.name = "ApiError";
  }

  toStatus(): Record<string, unknown> {
    const status: Record<string, unknown> = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
    };
    if (this.details) status.details = this.details;
    status.code = this.code;
    return status;
  }
}

/** How a resource is named in messages: "configmaps", "leases.coordination.k8s.io". */
export interface QualifiedResource {
  readonly group: string;
  readonly plural: string;
}

function qualified(r: QualifiedResource): string {
  return r.group ? `${r.plural}.${r.group}` : r.plural;
}

function detailsOf(r: QualifiedResource, name: string): StatusDetails {
  return r.group ? { name, group: r.group, kind: r.plural } : { name, kind: r.plural };
}

export const errors = {
  notFound(r: QualifiedResource, name: string): ApiError {
    return new ApiError(404, "NotFound", `${qualified(r)} "${name}" not found`, detailsOf(r, name));
  },
  alreadyExists(r: QualifiedResource, name: string): ApiError {
    return new ApiError(409, "AlreadyExists", `${qualified(r)} "${name}" already exists`, detailsOf(r, name));
  },
  conflict(r: QualifiedResource, name: string, why: string): ApiError {
    return new ApiError(
      409,
      "Conflict",
      `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`,
      detailsOf(r, name),
    );
  },
  modified(r: QualifiedResource, name: string): ApiError {
    return errors.conflict(
      r,
      name,
      "the object has been modified; please apply your changes to the latest version and try again",
    );
  },
  invalid(kind: string, group: string, name: string, causes: readonly FieldError[]): ApiError {
    const list = causes.map((c) => `${c.field}: ${c.message}`);
    const summary = list.length === 1 ? (list[0] as string) : `[${list.join(", ")}]`;
    return new ApiError(422, "Invalid", `${kind} "${name}" is invalid: ${summary}`, {
      name,
      ...(group ? { group } : {}),
      kind,
      causes: causes.map((c) => ({ reason: c.reason, message: c.message, field: c.field })),
    });
  },
  badRequest(message: string): ApiError {
    return new ApiError(400, "BadRequest", message);
  },
  forbidden(r: QualifiedResource, name: string, why: string): ApiError {
    const what = name ? `${qualified(r)} "${name}"` : qualified(r);
    return new ApiError(403, "Forbidden", `${what} is forbidden: ${why}`, detailsOf(r, name));
  },
  unauthorized(): ApiError {
    return new ApiError(401, "Unauthorized", "Unauthorized");
  },
  methodNotAllowed(): ApiError {
    return new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  },
  notAcceptable(accept: string): ApiError {
    return new ApiError(
      406,
      "NotAcceptable",
      `only the following media types are accepted: application/json, application/yaml (asked for ${accept})`,
    );
  },
  unsupportedMediaType(contentType: string, supported: readonly string[]): ApiError {
    return new ApiError(
      415,
      "UnsupportedMediaType",
      `the body of the request was in an unknown format - accepted media types include: ${supported.join(", ")} (got ${contentType || "none"})`,
    );
  },
  tooLarge(limit: number): ApiError {
    return new ApiError(413, "RequestEntityTooLarge", `Request entity too large: limit is ${limit}`);
  },
  gone(message: string): ApiError {
    return new ApiError(410, "Expired", message);
  },
  tooOldResourceVersion(requested: number, oldest: number): ApiError {
    return new ApiError(410, "Expired", `too old resource version: ${requested} (${oldest})`);
  },
  pathNotFound(): ApiError {
    return new ApiError(404, "NotFound", "the server could not find the requested resource");
  },
  timeout(message: string): ApiError {
    return new ApiError(504, "Timeout", message, { retryAfterSeconds: 1 });
  },
  internal(message: string): ApiError {
    return new ApiError(500, "InternalError", `Internal error occurred: ${message}`, {
      causes: [{ reason: "", message }],
    });
  },
  unavailable(message: string): ApiError {
    return new ApiError(503, "ServiceUnavailable", message, { retryAfterSeconds: 1 });
  },
};

/** One field-level validation failure, as Kubernetes words it. */
export interface FieldError {
  readonly field: string;
  readonly reason:
    | "FieldValueRequired"
    | "FieldValueInvalid"
    | "FieldValueTooLong"
    | "FieldValueNotSupported"
    | "FieldValueForbidden"
    | "FieldValueDuplicate";
  readonly message: string;
}

export const fieldErrors = {
  required(field: string, why = ""): FieldError {
    return { field, reason: "FieldValueRequired", message: why ? `Required value: ${why}` : "Required value" };
  },
  invalid(field: string, value: unknown, why: string): FieldError {
    return { field, reason: "FieldValueInvalid", message: `Invalid value: ${formatValue(value)}: ${why}` };
  },
  tooLong(field: string, max: number): FieldError {
    return { field, reason: "FieldValueTooLong", message: `Too long: must have at most ${max} bytes` };
  },
  notSupported(field: string, value: unknown, supported: readonly string[]): FieldError {
    return {
      field,
      reason: "FieldValueNotSupported",
      message: `Unsupported value: ${formatValue(value)}: supported values: ${supported.map((s) => `"${s}"`).join(", ")}`,
    };
  },
  forbidden(field: string, why: string): FieldError {
    return { field, reason: "FieldValueForbidden", message: `Forbidden: ${why}` };
  },
  duplicate(field: string, value: unknown): FieldError {
    return { field, reason: "FieldValueDuplicate", message: `Duplicate value: ${formatValue(value)}` };
  },
};

function formatValue(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (v === null || v === undefined) return "null";
  return JSON.stringify(v);
}

import { type FieldError, fieldErrors } from "./status.js";

/**
 * Kubernetes' name and metadata rules (apimachinery's validation package states them; the
 * messages below say the same things in the words kubectl users see from a real server).
 */

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

export type NameRule = "subdomain" | "label" | "dns1035" | "path-segment";

export function dns1123Label(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push("must be no more than 63 characters");
  if (!DNS1123_LABEL.test(v))
    out.push(
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    );
  return out;
}

export function dns1123Subdomain(v: string): string[] {
  const out: string[] = [];
  if (v.length > 253) out.push("must be no more than 253 characters");
  if (!DNS1123_SUBDOMAIN.test(v))
    out.push(
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    );
  return out;
}

export function dns1035Label(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push("must be no more than 63 characters");
  if (!DNS1035_LABEL.test(v))
    out.push(
      "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
    );
  return out;
}

function pathSegment(v: string): string[] {
  if (v === "." || v === "..") return [`may not be '${v}'`];
  if (v.includes("/")) return ["may not contain '/'"];
  if (v.includes("%")) return ["may not contain '%'"];
  return [];
}

export function checkName(rule: NameRule, v: string): string[] {
  switch (rule) {
    case "label":
      return dns1123Label(v);
    case "dns1035":
      return dns1035Label(v);
    case "path-segment":
      return pathSegment(v);
    default:
      return dns1123Subdomain(v);
  }
}

/** A label or annotation key: an optional DNS subdomain prefix and a name of up to 63 characters. */
export function qualifiedName(v: string): string[] {
  const parts = v.split("/");
  let name = v;
  const out: string[] = [];
  if (parts.length === 2) {
    const [prefix, rest] = parts as [string, string];
    name = rest;
    if (prefix.length === 0) out.push("prefix part must be non-empty");
    else out.push(...dns1123Subdomain(prefix).map((m) => `prefix part ${m}`));
  } else if (parts.length > 2) {
    return [
      "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ];
  }
  if (name.length === 0) out.push("name part must be non-empty");
  else if (name.length > 63) out.push("name part must be no more than 63 characters");
  if (name.length > 0 && !QUALIFIED_NAME.test(name))
    out.push(
      "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    );
  return out;
}

export function labelValue(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push("must be no more than 63 characters");
  if (!LABEL_VALUE.test(v))
    out.push(
      "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    );
  return out;
}

/** A ConfigMap or Secret data key. */
export function configKey(v: string): string[] {
  const out: string[] = [];
  if (v.length > 253) out.push("must be no more than 253 characters");
  if (!CONFIG_KEY.test(v))
    out.push(
      "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
    );
  if (v === "." || v === "..") out.push(`must not be '${v}'`);
  else if (v.startsWith("..")) out.push("must not start with '..'");
  return out;
}

const TOTAL_ANNOTATION_SIZE = 256 * 1024;

/** Validates metadata as every resource shares it; `name` may be empty while generateName is pending. */
export function validateObjectMeta(
  meta: Record<string, unknown>,
  nameRule: NameRule,
  namespaced: boolean,
): FieldError[] {
  const errs: FieldError[] = [];
  const name = meta.name;
  if (typeof name !== "string" || name === "") {
    errs.push(fieldErrors.required("metadata.name", "name or generateName is required"));
  } else {
    for (const m of checkName(nameRule, name)) errs.push(fieldErrors.invalid("metadata.name", name, m));
  }
  if (namespaced) {
    const ns = meta.namespace;
    if (typeof ns !== "string" || ns === "") errs.push(fieldErrors.required("metadata.namespace"));
    else for (const m of dns1123Label(ns)) errs.push(fieldErrors.invalid("metadata.namespace", ns, m));
  } else if (meta.namespace !== undefined && meta.namespace !== "") {
    errs.push(fieldErrors.forbidden("metadata.namespace", "not allowed on this type"));
  }
  errs.push(...validateStringMap(meta.labels, "metadata.labels", true));
  errs.push(...validateStringMap(meta.annotations, "metadata.annotations", false));
  if (meta.annotations && typeof meta.annotations === "object") {
    let size = 0;
    for (const [k, v] of Object.entries(meta.annotations)) size += Buffer.byteLength(k) + Buffer.byteLength(String(v));
    if (size > TOTAL_ANNOTATION_SIZE) errs.push(fieldErrors.tooLong("metadata.annotations", TOTAL_ANNOTATION_SIZE));
  }
  return errs;
}

function validateStringMap(v: unknown, field: string, labels: boolean): FieldError[] {
  if (v === undefined || v === null) return [];
  if (typeof v !== "object" || Array.isArray(v)) return [fieldErrors.invalid(field, v, "must be a map of strings")];
  const errs: FieldError[] = [];
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    for (const m of qualifiedName(k)) errs.push(fieldErrors.invalid(field, k, m));
    if (typeof val !== "string") errs.push(fieldErrors.invalid(`${field}[${k}]`, val, "must be a string"));
    else if (labels) for (const m of labelValue(val)) errs.push(fieldErrors.invalid(field, val, m));
  }
  return errs;
}

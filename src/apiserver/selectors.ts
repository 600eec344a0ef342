import { errors } from "./status.js";
import { labelValue, qualifiedName } from "./validation.js";

/**
 * Label selectors (`-l app=web,tier!=db,env in (a,b),!legacy`) and field selectors
 * (`--field-selector metadata.name=x,status.phase!=Running`), parsed once per request.
 */

type LabelRequirement =
  | { readonly op: "exists" | "!exists"; readonly key: string }
  | { readonly op: "=" | "!="; readonly key: string; readonly value: string }
  | { readonly op: "in" | "notin"; readonly key: string; readonly values: readonly string[] }
  | { readonly op: ">" | "<"; readonly key: string; readonly value: number };

export interface LabelSelector {
  readonly requirements: readonly LabelRequirement[];
  matches(labels: Readonly<Record<string, unknown>> | undefined): boolean;
}

function bad(selector: string, why: string): never {
  throw errors.badRequest(`unable to parse requirement: ${why} (in label selector "${selector}")`);
}

export function parseLabelSelector(text: string): LabelSelector {
  const requirements: LabelRequirement[] = [];
  let i = 0;
  const n = text.length;
  const skipSpace = () => {
    while (i < n && /\s/.test(text[i] as string)) i++;
  };
  const readKey = (): string => {
    skipSpace();
    const start = i;
    while (i < n && /[A-Za-z0-9_./-]/.test(text[i] as string)) i++;
    return text.slice(start, i);
  };
  const readValue = (): string => {
    skipSpace();
    const start = i;
    while (i < n && /[A-Za-z0-9_.-]/.test(text[i] as string)) i++;
    return text.slice(start, i);
  };
  const checkKey = (key: string) => {
    if (!key) bad(text, "a label key is required");
    const errs = qualifiedName(key);
    if (errs.length > 0) bad(text, `invalid label key "${key}": ${errs.join("; ")}`);
  };
  const checkValue = (v: string) => {
    const errs = labelValue(v);
    if (errs.length > 0) bad(text, `invalid label value: "${v}": at key: ${errs.join("; ")}`);
  };
  skipSpace();
  if (i >= n) return { requirements, matches: () => true };
  for (;;) {
    skipSpace();
    if (text[i] === "!") {
      i++;
      const key = readKey();
      checkKey(key);
      requirements.push({ op: "!exists", key });
    } else {
      const key = readKey();
      checkKey(key);
      skipSpace();
      const rest = text.slice(i);
      if (rest.startsWith("==") || rest.startsWith("!=") || rest.startsWith("=")) {
        const op = rest.startsWith("!=") ? "!=" : "=";
        i += rest.startsWith("==") || rest.startsWith("!=") ? 2 : 1;
        const value = readValue();
        checkValue(value);
        requirements.push({ op, key, value });
      } else if (rest.startsWith(">") || rest.startsWith("<")) {
        i++;
        const v = readValue();
        if (!/^-?\d+$/.test(v)) bad(text, `for 'Gt', 'Lt' operators, the value must be an integer`);
        requirements.push({ op: rest.startsWith(">") ? ">" : "<", key, value: Number(v) });
      } else if (/^(in|notin)\s*\(/.test(rest)) {
        const op = rest.startsWith("in") ? "in" : "notin";
        i += op.length;
        skipSpace();
        i++; // (
        const values: string[] = [];
        for (;;) {
          const v = readValue();
          checkValue(v);
          values.push(v);
          skipSpace();
          if (text[i] === ",") {
            i++;
            continue;
          }
          if (text[i] === ")") {
            i++;
            break;
          }
          bad(text, `found '${text[i] ?? "end of string"}', expected: ',', ')'`);
        }
        if (values.length === 1 && values[0] === "") bad(text, `for '${op}' the set of values must not be empty`);
        requirements.push({ op, key, values });
      } else if (rest === "" || rest.startsWith(",")) {
        requirements.push({ op: "exists", key });
      } else {
        bad(text, `found '${rest[0]}', expected: in, notin, =, ==, !=, gt, lt`);
      }
    }
    skipSpace();
    if (i >= n) break;
    if (text[i] !== ",") bad(text, `found '${text[i]}', expected: ','`);
    i++;
  }
  return {
    requirements,
    matches(labels) {
      const l = labels ?? {};
      return requirements.every((r) => {
        const has = Object.hasOwn(l, r.key);
        const v = has ? String(l[r.key]) : undefined;
        switch (r.op) {
          case "exists":
            return has;
          case "!exists":
            return !has;
          case "=":
            return v === r.value;
          case "!=":
            return v !== r.value;
          case "in":
            return v !== undefined && r.values.includes(v);
          case "notin":
            return v === undefined || !r.values.includes(v);
          case ">":
            return v !== undefined && /^-?\d+$/.test(v) && Number(v) > r.value;
          case "<":
            return v !== undefined && /^-?\d+$/.test(v) && Number(v) < r.value;
        }
        return false;
      });
    },
  };
}

export interface FieldRequirement {
  readonly field: string;
  readonly op: "=" | "!=";
  readonly value: string;
}

export interface FieldSelector {
  readonly requirements: readonly FieldRequirement[];
  matches(get: (field: string) => string): boolean;
  /** The value a requirement pins a field to (metadata.name=x lets a list read one key). */
  exact(field: string): string | undefined;
}

/** Parses a field selector; `known` lists the fields the resource supports. */
export function parseFieldSelector(text: string, known: readonly string[]): FieldSelector {
  const requirements: FieldRequirement[] = [];
  for (const part of text.split(",")) {
    const p = part.trim();
    if (!p) continue;
    const m = /^([^=!]+?)\s*(==|!=|=)\s*(.*)$/.exec(p);
    if (!m) throw errors.badRequest(`invalid selector: '${text}'; can't understand '${p}'`);
    const field = m[1] as string;
    if (!known.includes(field)) throw errors.badRequest(`field label not supported: ${field}`);
    requirements.push({ field, op: m[2] === "!=" ? "!=" : "=", value: (m[3] as string).trim() });
  }
  return {
    requirements,
    matches: (get) => requirements.every((r) => (get(r.field) === r.value) === (r.op === "=")),
    exact: (field) => requirements.find((r) => r.field === field && r.op === "=")?.value,
  };
}

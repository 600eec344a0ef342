/**
 * A minimal DER (ITU-T X.690) encoder, and a reader just capable enough to walk a certificate's
 * TBSCertificate. Only the universal types an X.509 certificate needs are here; tags are always
 * single-byte (tag numbers below 31), lengths are definite and minimal, as DER requires.
 */

export const Tag = {
  Boolean: 0x01,
  Integer: 0x02,
  BitString: 0x03,
  OctetString: 0x04,
  Null: 0x05,
  ObjectIdentifier: 0x06,
  Utf8String: 0x0c,
  PrintableString: 0x13,
  Ia5String: 0x16,
  UtcTime: 0x17,
  GeneralizedTime: 0x18,
  Sequence: 0x30,
  Set: 0x31,
} as const;

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One tag-length-value; `tag` is the whole identifier octet (class, constructed bit and number). */
export function tlv(tag: number, content: Uint8Array): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) {
    throw new Error(`der: unsupported tag ${tag}`);
  }
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

export function sequence(...items: readonly Uint8Array[]): Buffer {
  return tlv(Tag.Sequence, Buffer.concat(items));
}

/** A SET OF; DER orders the encodings of the elements as octet strings (X.690 11.6). */
export function setOf(...items: readonly Uint8Array[]): Buffer {
  const sorted = [...items].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return tlv(Tag.Set, Buffer.concat(sorted));
}

export function boolean(value: boolean): Buffer {
  return tlv(Tag.Boolean, Buffer.from([value ? 0xff : 0x00]));
}

export function nullValue(): Buffer {
  return tlv(Tag.Null, Buffer.alloc(0));
}

/**
 * A non-negative INTEGER from its unsigned big-endian magnitude: leading zero octets are dropped
 * and one 0x00 is prepended when the high bit is set, so the encoding is minimal and positive.
 */
export function unsignedInteger(magnitude: Uint8Array | number): Buffer {
  let bytes: Buffer;
  if (typeof magnitude === "number") {
    if (!Number.isSafeInteger(magnitude) || magnitude < 0) throw new Error(`der: bad integer ${magnitude}`);
    const out: number[] = [];
    for (let n = magnitude; n > 0; n = Math.floor(n / 256)) out.unshift(n % 256);
    bytes = Buffer.from(out);
  } else {
    bytes = Buffer.from(magnitude);
  }
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start++;
  bytes = bytes.subarray(start);
  if (bytes.length === 0) bytes = Buffer.from([0]);
  else if ((bytes[0]! & 0x80) !== 0) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(Tag.Integer, bytes);
}

export function objectIdentifier(dotted: string): Buffer {
  const arcs = dotted.split(".").map((s) => {
    if (!/^(0|[1-9][0-9]*)$/.test(s)) throw new Error(`der: bad OID ${dotted}`);
    return Number(s);
  });
  const [first, second, ...rest] = arcs;
  if (first === undefined || second === undefined || first > 2 || (first < 2 && second > 39)) {
    throw new Error(`der: bad OID ${dotted}`);
  }
  const out: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    if (!Number.isSafeInteger(arc)) throw new Error(`der: OID arc too large in ${dotted}`);
    const groups: number[] = [arc % 128];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) groups.unshift((n % 128) | 0x80);
    out.push(...groups);
  }
  return tlv(Tag.ObjectIdentifier, Buffer.from(out));
}

export function octetString(bytes: Uint8Array): Buffer {
  return tlv(Tag.OctetString, bytes);
}

/** A BIT STRING whose length is a whole number of octets (keys, signatures). */
export function bitString(bytes: Uint8Array): Buffer {
  return tlv(Tag.BitString, Buffer.concat([Buffer.from([0]), bytes]));
}

/**
 * A named BIT STRING (such as KeyUsage) from the numbers of the bits that are set, bit 0 being the
 * most significant bit of the first octet. DER drops trailing zero bits (X.690 11.2.2).
 */
export function namedBitString(bits: readonly number[]): Buffer {
  if (bits.length === 0) return tlv(Tag.BitString, Buffer.from([0]));
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) {
    if (!Number.isInteger(bit) || bit < 0) throw new Error(`der: bad bit number ${bit}`);
    bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  }
  const unused = 7 - (highest % 8);
  return tlv(Tag.BitString, Buffer.concat([Buffer.from([unused]), bytes]));
}

export function utf8String(value: string): Buffer {
  return tlv(Tag.Utf8String, Buffer.from(value, "utf8"));
}

/** The contents octets of an IA5String (7-bit ASCII); throws for any other character. */
export function ia5Contents(value: string): Buffer {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: IA5 is exactly the 7-bit range
  if (!/^[\x00-\x7f]*$/.test(value)) throw new Error(`der: ${JSON.stringify(value)} is not an IA5String`);
  return Buffer.from(value, "ascii");
}

export function ia5String(value: string): Buffer {
  return tlv(Tag.Ia5String, ia5Contents(value));
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/**
 * An X.509 Time (RFC 5280 4.1.2.5): UTCTime (YYMMDDHHMMSSZ) for the years 1950 to 2049,
 * GeneralizedTime (YYYYMMDDHHMMSSZ) otherwise; always UTC, whole seconds.
 */
export function time(date: Date): Buffer {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new Error("der: invalid date");
  const d = new Date(ms);
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) throw new Error(`der: year ${year} cannot be encoded`);
  const rest =
    pad(d.getUTCMonth() + 1, 2) +
    pad(d.getUTCDate(), 2) +
    pad(d.getUTCHours(), 2) +
    pad(d.getUTCMinutes(), 2) +
    pad(d.getUTCSeconds(), 2) +
    "Z";
  if (year >= 1950 && year < 2050) return tlv(Tag.UtcTime, Buffer.from(pad(year % 100, 2) + rest, "ascii"));
  return tlv(Tag.GeneralizedTime, Buffer.from(pad(year, 4) + rest, "ascii"));
}

/** [n] EXPLICIT: a constructed context-specific wrapper around a complete encoding. */
export function explicit(n: number, inner: Uint8Array): Buffer {
  return tlv(0xa0 | n, inner);
}

/** [n] IMPLICIT for a primitive type: the contents octets under a context-specific tag. */
export function implicitPrimitive(n: number, contents: Uint8Array): Buffer {
  return tlv(0x80 | n, contents);
}

/** One element found by the reader; `start`/`end` bound its whole encoding, `body` its contents. */
export interface Element {
  readonly tag: number;
  readonly start: number;
  readonly bodyStart: number;
  readonly end: number;
}

/** Reads the element at `offset` of `buf`, checking that it fits inside `limit`. */
export function readElement(buf: Uint8Array, offset: number, limit: number = buf.length): Element {
  if (offset + 2 > limit) throw new Error("der: truncated element");
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new Error("der: high tag numbers are not supported");
  const first = buf[offset + 1]!;
  let length: number;
  let bodyStart: number;
  if (first < 0x80) {
    length = first;
    bodyStart = offset + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw new Error("der: indefinite length is not DER");
    if (count > 4) throw new Error("der: length too large");
    if (offset + 2 + count > limit) throw new Error("der: truncated length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[offset + 2 + i]!;
    bodyStart = offset + 2 + count;
  }
  const end = bodyStart + length;
  if (end > limit) throw new Error("der: element overruns its container");
  return { tag, start: offset, bodyStart, end };
}

/** The elements directly inside a constructed element. */
export function children(buf: Uint8Array, parent: Element): Element[] {
  const out: Element[] = [];
  for (let offset = parent.bodyStart; offset < parent.end; ) {
    const el = readElement(buf, offset, parent.end);
    out.push(el);
    offset = el.end;
  }
  return out;
}

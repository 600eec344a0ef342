/**
 * HPACK (RFC 7541): the header compression of HTTP/2, for the member's own HTTP/2 framing of
 * gRPC. The decoder takes everything a peer may send (indexed fields, literals with and without
 * indexing, never-indexed literals, Huffman strings, dynamic table size updates); the encoder
 * writes only what needs no shared state (static-table indexes and literals without indexing),
 * so an encoded block can be cached and sent on any connection.
 *
 * Header names and values are kept as latin1 strings: one character per octet, so a value's
 * bytes survive unchanged and `length` is its size in octets (the unit of the table's size).
 */

export type HeaderField = readonly [name: string, value: string];

/** A header block that cannot be decoded: HTTP/2 makes this a connection error (COMPRESSION_ERROR). */
export class HpackError extends Error {
  constructor(message: string) {
    super(`hpack: ${message}`);
    this.name = "HpackError";
  }
}

/** Appendix A. Index i (1-based on the wire) is STATIC_TABLE[i - 1]. */
const STATIC_TABLE: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/** An entry's size in the dynamic table: its octets plus 32 (section 4.1). */
const entrySize = (name: string, value: string): number => name.length + value.length + 32;

/**
 * Appendix B as code lengths, by symbol (0–255, then 256 = EOS). The code is canonical: codes of
 * one length are consecutive in symbol order and each length continues the previous one, so the
 * codes themselves follow from the lengths (`huffmanCodes`).
 */
const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
  28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6,
  5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23,
  22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22,
  23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26,
  20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27,
  27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27,
  27, 27, 27, 26, 30,
];

/** The canonical codes for HUFFMAN_LENGTHS: symbols sorted by (length, symbol) count upwards. */
function huffmanCodes(lengths: readonly number[]): number[] {
  const symbols = lengths.map((_, s) => s).sort((a, b) => (lengths[a] ?? 0) - (lengths[b] ?? 0) || a - b);
  const codes = new Array<number>(lengths.length).fill(0);
  let code = 0;
  let previous = lengths[symbols[0] ?? 0] ?? 0;
  symbols.forEach((s, i) => {
    const length = lengths[s] ?? 0;
    if (i > 0) code = (code + 1) * 2 ** (length - previous);
    previous = length;
    codes[s] = code;
  });
  return codes;
}

const EOS = 256;

/**
 * The decoding tree as flat arrays: node n's children are CHILD[2n] (bit 0) and CHILD[2n + 1]
 * (bit 1); a child below 0 is a leaf holding symbol -child - 1. Node 0 is the root.
 */
const HUFFMAN_TREE: Int32Array = (() => {
  const codes = huffmanCodes(HUFFMAN_LENGTHS);
  const child = new Int32Array(2 * 512);
  let nodes = 1;
  HUFFMAN_LENGTHS.forEach((length, symbol) => {
    const code = codes[symbol] ?? 0;
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = 2 * node + (Math.floor(code / 2 ** bit) % 2);
      if (bit === 0) child[slot] = -symbol - 1;
      else {
        if (child[slot] === 0) child[slot] = nodes++;
        node = child[slot] ?? 0;
      }
    }
  });
  return child;
})();

/**
 * Decodes a Huffman-coded string (section 5.2). The padding at the end must be fewer than 8 bits
 * and all ones (a prefix of EOS); EOS itself must not appear.
 */
export function huffmanDecode(bytes: Uint8Array): string {
  let out = "";
  let node = 0;
  let depth = 0; // bits since the last symbol
  let allOnes = true; // those bits were all 1s
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      const next = HUFFMAN_TREE[2 * node + b] ?? 0;
      depth++;
      allOnes &&= b === 1;
      if (next < 0) {
        const symbol = -next - 1;
        if (symbol === EOS) throw new HpackError("EOS symbol inside a Huffman-coded string");
        out += String.fromCharCode(symbol);
        node = 0;
        depth = 0;
        allOnes = true;
      } else node = next;
    }
  }
  if (depth > 7) throw new HpackError("Huffman padding longer than 7 bits");
  if (!allOnes) throw new HpackError("Huffman padding that is not a prefix of EOS");
  return out;
}

/** Reads HPACK's prefixed integers and strings from one header block. */
class BlockReader {
  offset = 0;
  constructor(
    private readonly block: Uint8Array,
    private readonly huffman: HuffmanMemo,
  ) {}

  get done(): boolean {
    return this.offset >= this.block.length;
  }

  peek(): number {
    return this.block[this.offset] ?? 0;
  }

  /** An integer with an N-bit prefix (section 5.1); the prefix's other bits are ignored. */
  integer(prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = this.byte() & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if (value > 0x7fffffff) throw new HpackError("integer too large");
      if ((b & 0x80) === 0) return value;
      shift += 7;
    }
  }

  /** A string literal (section 5.2), Huffman-coded or raw. */
  string(): string {
    const huffman = (this.peek() & 0x80) !== 0;
    const length = this.integer(7);
    if (this.offset + length > this.block.length) throw new HpackError("string runs past the end of the block");
    const bytes = this.block.subarray(this.offset, this.offset + length);
    this.offset += length;
    return huffman
      ? this.huffman.decode(bytes)
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1");
  }

  private byte(): number {
    if (this.offset >= this.block.length) throw new HpackError("header block ends inside a field");
    return this.block[this.offset++] ?? 0;
  }
}

/**
 * The last few Huffman-coded strings one connection's peer sent, decoded. gRPC clients send the
 * method's :path as a literal that is never added to the dynamic table, so every call carries the
 * same Huffman-coded bytes; comparing them with the last ones costs far less than decoding bit by
 * bit. Only short strings are kept, and only strings that decoded without an error.
 */
class HuffmanMemo {
  private static readonly ENTRIES = 8;
  private static readonly MAX_BYTES = 128;
  private readonly coded: Buffer[] = [];
  private readonly decoded: string[] = [];

  decode(bytes: Uint8Array): string {
    for (let i = 0; i < this.coded.length; i++) {
      if ((this.coded[i] as Buffer).equals(bytes)) return this.decoded[i] as string;
    }
    const text = huffmanDecode(bytes);
    if (bytes.length <= HuffmanMemo.MAX_BYTES) {
      if (this.coded.length === HuffmanMemo.ENTRIES) {
        this.coded.pop();
        this.decoded.pop();
      }
      this.coded.unshift(Buffer.from(bytes));
      this.decoded.unshift(text);
    }
    return text;
  }
}

/**
 * One direction's decoding context. The dynamic table lives as long as the connection: decode
 * every header block the peer sends, in order, with the same decoder.
 */
export class HpackDecoder {
  /** Newest first: dynamic index 62 is entries[0]. */
  private entries: HeaderField[] = [];
  private size = 0;
  private maxSize: number;
  private readonly huffman = new HuffmanMemo();

  /** @param limit the SETTINGS_HEADER_TABLE_SIZE we announced: the peer may never exceed it. */
  constructor(private readonly limit = 4096) {
    this.maxSize = limit;
  }

  /** The current dynamic table size in octets (section 4.1), for tests and diagnostics. */
  get tableSize(): number {
    return this.size;
  }

  /** Decodes one complete header block (HEADERS plus any CONTINUATION payloads, joined). */
  decode(block: Uint8Array): HeaderField[] {
    const reader = new BlockReader(block, this.huffman);
    const fields: HeaderField[] = [];
    while (!reader.done) {
      const first = reader.peek();
      if (first & 0x80) {
        fields.push(this.field(reader.integer(7)));
      } else if (first & 0x40) {
        const field = this.literal(reader, 6);
        this.insert(field);
        fields.push(field);
      } else if (first & 0x20) {
        if (fields.length > 0) throw new HpackError("dynamic table size update after a header field");
        const size = reader.integer(5);
        if (size > this.limit) throw new HpackError(`dynamic table size ${size} above the limit ${this.limit}`);
        this.maxSize = size;
        this.evictTo(size);
      } else {
        // 0000xxxx without indexing, 0001xxxx never indexed: both leave the table alone.
        fields.push(this.literal(reader, 4));
      }
    }
    return fields;
  }

  private literal(reader: BlockReader, prefixBits: number): HeaderField {
    const index = reader.integer(prefixBits);
    const name = index === 0 ? reader.string() : this.field(index)[0];
    return [name, reader.string()];
  }

  private field(index: number): HeaderField {
    if (index === 0) throw new HpackError("index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1] as HeaderField;
    const entry = this.entries[index - STATIC_TABLE.length - 1];
    if (!entry) throw new HpackError(`index ${index} beyond the tables`);
    return entry;
  }

  private insert([name, value]: HeaderField): void {
    const size = entrySize(name, value);
    // An entry larger than the table empties it and is not added (section 4.4).
    this.evictTo(this.maxSize - size);
    if (size <= this.maxSize) {
      this.entries.unshift([name, value]);
      this.size += size;
    }
  }

  private evictTo(size: number): void {
    while (this.size > Math.max(0, size)) {
      const [name, value] = this.entries.pop() as HeaderField;
      this.size -= entrySize(name, value);
    }
  }
}

function appendInteger(out: number[], value: number, prefixBits: number, firstBits: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstBits | value);
    return;
  }
  out.push(firstBits | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function appendString(out: number[], s: string): void {
  appendInteger(out, s.length, 7, 0);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0xff);
}

const STATIC_FIELD_INDEX = new Map<string, number>();
const STATIC_NAME_INDEX = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  STATIC_FIELD_INDEX.set(`${name}\0${value}`, i + 1);
  if (!STATIC_NAME_INDEX.has(name)) STATIC_NAME_INDEX.set(name, i + 1);
});

/**
 * Encodes a header block without touching either side's dynamic table: a field that is in the
 * static table whole becomes its index, anything else a literal without indexing (by static name
 * index where there is one). Names must be lowercase (HTTP/2 requires it); strings are not
 * Huffman-coded.
 */
export function encodeHeaders(fields: readonly HeaderField[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const whole = STATIC_FIELD_INDEX.get(`${name}\0${value}`);
    if (whole !== undefined) {
      appendInteger(out, whole, 7, 0x80);
      continue;
    }
    const nameIndex = STATIC_NAME_INDEX.get(name);
    if (nameIndex !== undefined) appendInteger(out, nameIndex, 4, 0);
    else {
      out.push(0);
      appendString(out, name);
    }
    appendString(out, value);
  }
  return Buffer.from(out);
}

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import type Dockerode from "dockerode";
import { packageRoot } from "../../util/paths.js";

/**
 * The lab node image: what each lab host container runs (`lab host`, as kind runs its node image).
 * No registry is needed: by default it is built `FROM scratch` out of this machine's own Node.js
 * binary and the shared libraries it loads, the built project (dist/, package.json, production
 * node_modules, templates, topologies), busybox (a shell and the usual tools) and etcdctl when the
 * machine has them. The tag is a hash of all of that, so an unchanged project reuses its image and
 * a rebuilt one gets a new one.
 */

export const NODE_IMAGE_REPO = "lab/node";

export interface ImageBuildOptions {
  docker: Dockerode;
  /** The image tag; default imageTag(baseImage). */
  tag?: string;
  /** A base image from a registry (e.g. "debian:bookworm-slim") instead of scratch + host libraries. */
  baseImage?: string;
  /** Gets each line of the build output (and a few of this module's own). */
  log?: (line: string) => void;
}

/** Bump when the image layout changes in a way the hashed inputs do not show. */
const LAYOUT_VERSION = "1";
const HOST_BUSYBOX = "/bin/busybox";
const SCRATCH_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
const BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const LAB_WRAPPER = '#!/bin/sh\nexec /usr/local/bin/node /lab/dist/src/cli/main.js "$@"\n';
const PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP = "root:x:0:\nnogroup:x:65534:\n";
const NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n";

/** What goes into the image, found on this machine. */
interface Inputs {
  readonly root: string;
  readonly node: string;
  readonly template: string;
  readonly packages: readonly ProductionPackage[];
  readonly busybox: string | undefined;
  readonly etcdctl: string | undefined;
}

interface ProductionPackage {
  /** Where it is on this machine (symlinks resolved). */
  readonly dir: string;
  /** Where it goes under /lab: node_modules/NAME or node_modules/A/node_modules/B. */
  readonly rel: string;
  readonly version: string;
}

/** The image tag for this machine's Node.js, the built project and its tools (optionally, on a base image). */
export function imageTag(baseImage?: string): string {
  return tagOf(collectInputs(), baseImage);
}

const building = new Map<string, Promise<{ ref: string; built: boolean; seconds: number }>>();

/** Builds (or reuses, when the tag exists) the lab node image; returns the image reference "lab/node:<tag>". */
export async function ensureNodeImage(o: ImageBuildOptions): Promise<{ ref: string; built: boolean; seconds: number }> {
  const started = performance.now();
  // With a tag given, an existing image is reused without looking at this machine at all.
  let inputs = o.tag === undefined ? collectInputs() : undefined;
  const tag = o.tag ?? tagOf(inputs ?? collectInputs(), o.baseImage);
  const ref = `${NODE_IMAGE_REPO}:${tag}`;
  const seconds = () => Math.round((performance.now() - started) / 10) / 100;
  if (await imageExists(o.docker, ref)) return { ref, built: false, seconds: seconds() };
  // Two callers in one process asking for the same image share one build.
  const pending = building.get(ref);
  if (pending) return { ...(await pending), seconds: seconds() };
  inputs ??= collectInputs();
  const build = buildImage(o, inputs, tag, ref).then(() => ({ ref, built: true, seconds: seconds() }));
  building.set(ref, build);
  try {
    return await build;
  } finally {
    building.delete(ref);
  }
}

async function imageExists(docker: Dockerode, ref: string): Promise<boolean> {
  try {
    await docker.getImage(ref).inspect();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}

async function buildImage(o: ImageBuildOptions, inputs: Inputs, tag: string, ref: string): Promise<void> {
  const log = o.log ?? (() => {});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lab-node-image-"));
  try {
    log(`assembling the build context of ${ref} in ${dir}`);
    assembleContext(dir, inputs, tag, o.baseImage);
    const bytes = contextSize(dir);
    log(`sending the build context (${(bytes / 1e6).toFixed(1)} MB) to the Docker Engine`);
    let output: NodeJS.ReadableStream;
    try {
      output = await o.docker.buildImage(Readable.from(tarStream(dir)), { t: ref, rm: true, forcerm: true });
    } catch (err) {
      throw new Error(`docker build of ${ref} failed: ${(err as Error).message}`);
    }
    await followBuild(output, ref, log);
    if (!(await imageExists(o.docker, ref)))
      throw new Error(`docker build of ${ref} finished, but the engine has no image ${ref}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Reads the build's JSON message stream: "stream" lines go to log, an "error" becomes the thrown Error. */
function followBuild(output: NodeJS.ReadableStream, ref: string, log: (line: string) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let buffered = "";
    let error: string | undefined;
    const handle = (line: string) => {
      if (line.trim() === "") return;
      let message: { stream?: unknown; error?: unknown; errorDetail?: { message?: unknown }; status?: unknown };
      try {
        message = JSON.parse(line) as typeof message;
      } catch {
        log(line);
        return;
      }
      if (typeof message.stream === "string") {
        for (const l of message.stream.split("\n")) if (l.trim() !== "") log(l.replace(/\r$/, ""));
      } else if (typeof message.status === "string") {
        log(message.status);
      }
      const detail = message.errorDetail?.message;
      if (message.error !== undefined || detail !== undefined) error ??= String(detail ?? message.error);
    };
    output.on("data", (chunk: Buffer | string) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      lines.forEach(handle);
    });
    output.on("error", (err: Error) => reject(new Error(`docker build of ${ref} failed: ${err.message}`)));
    output.on("end", () => {
      handle(buffered);
      if (error !== undefined) reject(new Error(`docker build of ${ref} failed: ${error}`));
      else resolve();
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Inputs and the tag

function collectInputs(): Inputs {
  const root = packageRoot();
  const main = path.join(root, "dist/src/cli/main.js");
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: build the project first (npm run build)`);
  const templateFile = path.join(root, "templates/Dockerfile.node");
  return {
    root,
    node: fs.realpathSync(process.execPath),
    template: fs.readFileSync(templateFile, "utf8"),
    packages: productionPackages(root),
    busybox: fs.existsSync(HOST_BUSYBOX) ? fs.realpathSync(HOST_BUSYBOX) : undefined,
    etcdctl: commandPath("etcdctl"),
  };
}

function tagOf(inputs: Inputs, baseImage: string | undefined): string {
  const h = createHash("sha256");
  const add = (...parts: string[]) => h.update(`${parts.join("\0")}\n`);
  add("layout", LAYOUT_VERSION, baseImage ?? "scratch");
  add("template", inputs.template);
  add("node", fileHash(inputs.node));
  add("package.json", fileHash(path.join(inputs.root, "package.json")));
  for (const d of ["dist", "templates", "topologies"]) treeHash(path.join(inputs.root, d), d, add);
  for (const p of inputs.packages) add("package", p.rel, p.version);
  add("busybox", inputs.busybox ? fileHash(inputs.busybox) : "none");
  add("etcdctl", inputs.etcdctl ? fileHash(inputs.etcdctl) : "none");
  if (baseImage === undefined) for (const lib of libraries(inputs)) add("lib", lib, fileHash(lib));
  return h.digest("hex").slice(0, 16);
}

/** File hashes, remembered while the file is unchanged (hashing the Node.js binary takes a moment). */
const hashes = new Map<string, string>();

function fileHash(file: string): string {
  const st = fs.statSync(file);
  const key = `${file}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  const known = hashes.get(key);
  if (known) return known;
  const h = createHash("sha256");
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n = fs.readSync(fd, buf); n > 0; n = fs.readSync(fd, buf)) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  const digest = h.digest("hex");
  hashes.set(key, digest);
  return digest;
}

function treeHash(dir: string, rel: string, add: (...parts: string[]) => void): void {
  if (!fs.existsSync(dir)) return;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => cmp(a.name, b.name))) {
    const abs = path.join(dir, entry.name);
    const r = `${rel}/${entry.name}`;
    if (entry.isDirectory()) treeHash(abs, r, add);
    else if (entry.isSymbolicLink()) add("link", r, fs.readlinkSync(abs));
    else if (entry.isFile()) add("file", r, fileHash(abs), (fs.statSync(abs).mode & 0o111) !== 0 ? "x" : "-");
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

let packagesSeen: { readonly key: string; readonly packages: ProductionPackage[] } | undefined;

/** The production dependencies, as `npm ls --omit=dev --all --parseable` lists them. */
function productionPackages(root: string): ProductionPackage[] {
  // npm ls takes most of a second: ask again only when an install may have changed the answer.
  const key = [
    root,
    ...["package.json", "package-lock.json", "node_modules/.package-lock.json"].map((f) => stamp(root, f)),
  ].join("\0");
  if (packagesSeen?.key !== key) packagesSeen = { key, packages: listProductionPackages(root) };
  return packagesSeen.packages;
}

function stamp(root: string, file: string): string {
  try {
    const st = fs.statSync(path.join(root, file));
    return `${file}:${st.mtimeMs}:${st.size}`;
  } catch {
    return `${file}:-`;
  }
}

function listProductionPackages(root: string): ProductionPackage[] {
  let out: string;
  try {
    out = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable"], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      maxBuffer: 64 << 20,
    });
  } catch (err) {
    // npm ls exits non-zero on problems it still lists the tree for (an extraneous package, say).
    const e = err as { stdout?: unknown; stderr?: unknown; message: string };
    if (typeof e.stdout !== "string" || e.stdout.trim() === "")
      throw new Error(`npm ls --omit=dev failed in ${root}: ${String(e.stderr ?? "") || e.message}`);
    out = e.stdout;
  }
  const byRel = new Map<string, ProductionPackage>();
  for (const line of out.split("\n")) {
    const p = line.trim();
    if (p === "" || path.resolve(p) === root || !fs.existsSync(path.join(p, "package.json"))) continue;
    const pkg = JSON.parse(fs.readFileSync(path.join(p, "package.json"), "utf8")) as {
      name?: string;
      version?: string;
    };
    let rel = path.relative(root, p).split(path.sep).join("/");
    // A linked package (outside node_modules) goes where Node.js looks for it by name.
    if (!rel.startsWith("node_modules/") || rel.split("/").includes("..")) rel = `node_modules/${pkg.name ?? ""}`;
    byRel.set(rel, { dir: fs.realpathSync(p), rel, version: pkg.version ?? "" });
  }
  return [...byRel.values()].sort((a, b) => cmp(a.rel, b.rel));
}

/** A command's resolved path, as `command -v` finds it; undefined when there is none. */
function commandPath(name: string): string | undefined {
  try {
    const out = execFileSync("/bin/sh", ["-c", `command -v ${name}`], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    return out.startsWith("/") ? fs.realpathSync(out) : undefined;
  } catch {
    return undefined;
  }
}

/** Every shared library (and the dynamic loader) the image's binaries load, as ldd names them. */
function libraries(inputs: Inputs): string[] {
  const all = new Set<string>();
  for (const bin of [inputs.node, inputs.busybox, inputs.etcdctl])
    if (bin !== undefined) for (const lib of sharedLibraries(bin)) all.add(lib);
  return [...all].sort(cmp);
}

/** Parses `ldd BINARY`: "name => /path (addr)" and the loader's "/path (addr)"; none for a static binary. */
export function parseLdd(binary: string, output: string): string[] {
  const libs: string[] = [];
  for (const line of output.split("\n")) {
    const missing = /^\s*(\S+)\s+=>\s+not found/.exec(line);
    if (missing) throw new Error(`${binary} needs ${missing[1]}, which ldd cannot find on this machine`);
    const resolved = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (resolved?.[1]) libs.push(resolved[1]);
  }
  return libs;
}

function sharedLibraries(binary: string): string[] {
  let out: string;
  try {
    out = execFileSync("ldd", [binary], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { code?: string; stdout?: unknown; stderr?: unknown; message: string };
    if (e.code === "ENOENT")
      throw new Error(
        "ldd is not installed: it is needed to find the shared libraries of Node.js for a scratch image " +
          "(install libc-bin, or build on a base image with baseImage)",
      );
    const text = `${String(e.stdout ?? "")}${String(e.stderr ?? "")}`;
    if (/not a dynamic executable|statically linked/.test(text)) return [];
    throw new Error(`ldd ${binary} failed: ${text.trim() || e.message}`);
  }
  return parseLdd(binary, out);
}

// ---------------------------------------------------------------------------------------------
// The build context: Dockerfile, system/ (the runtime) and app/ (the lab), each copied to /.

function assembleContext(dir: string, inputs: Inputs, tag: string, baseImage: string | undefined): void {
  const system = path.join(dir, "system");
  const app = path.join(dir, "app");
  const scratch = baseImage === undefined;

  copyFile(inputs.node, path.join(system, "usr/local/bin/node"), 0o755);
  if (inputs.etcdctl) copyFile(inputs.etcdctl, path.join(system, "usr/local/bin/etcdctl"), 0o755);
  if (scratch) {
    // Each library at the path the loader (and ldd) names, as a real file.
    for (const lib of libraries(inputs)) copyFile(fs.realpathSync(lib), path.join(system, lib));
    // The loader's cache points at those same paths (also those outside its default directories).
    if (fs.existsSync("/etc/ld.so.cache")) copyFile("/etc/ld.so.cache", path.join(system, "etc/ld.so.cache"), 0o644);
    if (inputs.busybox) installBusybox(inputs.busybox, system);
    writeFile(path.join(system, "etc/passwd"), PASSWD, 0o644);
    writeFile(path.join(system, "etc/group"), GROUP, 0o644);
    writeFile(path.join(system, "etc/nsswitch.conf"), NSSWITCH, 0o644);
    makeDir(path.join(system, "tmp"), 0o1777);
    makeDir(path.join(system, "root"), 0o700);
    for (const d of ["etc/kubernetes/manifests", "var/log", "var/run", "var/lib"]) makeDir(path.join(system, d), 0o755);
  }
  // The wrapper needs a shell: busybox on scratch, the base image's otherwise.
  if (!scratch || inputs.busybox) writeFile(path.join(system, "usr/local/bin/lab"), LAB_WRAPPER, 0o755);

  const lab = path.join(app, "lab");
  copyFile(path.join(inputs.root, "package.json"), path.join(lab, "package.json"), 0o644);
  for (const d of ["dist", "templates", "topologies"]) copyTree(path.join(inputs.root, d), path.join(lab, d));
  for (const p of inputs.packages) {
    const nested = path.join(p.dir, "node_modules");
    // A package's own node_modules holds packages npm ls lists by themselves (when they are production ones).
    copyTree(p.dir, path.join(lab, p.rel), (src) => src !== nested);
  }

  const dockerfile = inputs.template
    .replaceAll("{{from}}", baseImage ?? "scratch")
    .replaceAll("{{path}}", scratch ? SCRATCH_PATH : BASE_PATH)
    .replaceAll("{{tag}}", tag);
  const unfilled = /\{\{[^}]*\}\}/.exec(dockerfile);
  if (unfilled) throw new Error(`templates/Dockerfile.node: unknown placeholder ${unfilled[0]}`);
  writeFile(path.join(dir, "Dockerfile"), dockerfile, 0o644);
}

/** busybox at /bin/busybox and a symlink for each applet where `busybox --install -s` puts it. */
function installBusybox(busybox: string, system: string): void {
  copyFile(busybox, path.join(system, "bin/busybox"), 0o755);
  let applets: string[];
  try {
    applets = execFileSync(busybox, ["--list-full"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "");
  } catch {
    // An old busybox without --list-full: every applet in /bin.
    applets = execFileSync(busybox, ["--list"], { encoding: "utf8" })
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .map((a) => `bin/${a}`);
  }
  for (const applet of applets) {
    const at = path.join(system, applet);
    if (applet.includes("..") || fs.existsSync(at) || applet === "bin/busybox") continue;
    fs.mkdirSync(path.dirname(at), { recursive: true });
    fs.symlinkSync("/bin/busybox", at);
  }
}

function copyFile(src: string, dest: string, mode?: number): void {
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(src, dest, fs.constants.COPYFILE_FICLONE);
  fs.chmodSync(dest, mode ?? fs.statSync(src).mode & 0o7777);
}

function copyTree(src: string, dest: string, filter?: (src: string) => boolean): void {
  if (!fs.existsSync(src)) return;
  fs.cpSync(src, dest, { recursive: true, verbatimSymlinks: true, ...(filter ? { filter } : {}) });
}

function writeFile(file: string, text: string, mode: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  fs.chmodSync(file, mode);
}

function makeDir(dir: string, mode: number): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, mode);
}

function contextSize(dir: string): number {
  let total = 0;
  for (const e of walk(dir, "")) if (e.stat.isFile()) total += e.stat.size;
  return total;
}

// ---------------------------------------------------------------------------------------------
// A minimal tar writer (ustar, with pax headers for long names): the context goes to the engine
// uncompressed and streamed, files in order, owned by root, with a fixed mtime.

interface Entry {
  readonly abs: string;
  readonly rel: string;
  readonly stat: fs.Stats;
}

function* walk(dir: string, rel: string): Generator<Entry> {
  for (const name of fs.readdirSync(dir).sort(cmp)) {
    const abs = path.join(dir, name);
    const r = rel === "" ? name : `${rel}/${name}`;
    const stat = fs.lstatSync(abs);
    yield { abs, rel: r, stat };
    if (stat.isDirectory()) yield* walk(abs, r);
  }
}

const BLOCK = 512;

async function* tarStream(dir: string): AsyncGenerator<Buffer> {
  for (const { abs, rel, stat } of walk(dir, "")) {
    const mode = stat.mode & 0o7777;
    if (stat.isDirectory()) {
      yield* tarHeader(`${rel}/`, "5", 0, mode, "");
    } else if (stat.isSymbolicLink()) {
      yield* tarHeader(rel, "2", 0, mode, fs.readlinkSync(abs));
    } else if (stat.isFile()) {
      yield* tarHeader(rel, "0", stat.size, mode, "");
      let sent = 0;
      for await (const chunk of fs.createReadStream(abs, { highWaterMark: 1 << 20 })) {
        sent += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      if (sent !== stat.size) throw new Error(`${abs} changed while it was being sent to the Docker Engine`);
      const pad = (BLOCK - (stat.size % BLOCK)) % BLOCK;
      if (pad > 0) yield Buffer.alloc(pad);
    }
    // Sockets, FIFOs and devices have no place in an image build context.
  }
  yield Buffer.alloc(2 * BLOCK);
}

/** The header block(s) of one entry: a pax header first when the name or link target does not fit ustar. */
function* tarHeader(name: string, type: "0" | "2" | "5", size: number, mode: number, link: string): Generator<Buffer> {
  const split = splitName(name);
  const linkFits = Buffer.byteLength(link) <= 100;
  const ascii = /^[\x20-\x7e]*$/;
  if (!split || !linkFits || !ascii.test(name) || !ascii.test(link)) {
    let records = paxRecord("path", name);
    if (link !== "") records += paxRecord("linkpath", link);
    const data = Buffer.from(records, "utf8");
    yield ustarHeader({ name: "././@PaxHeader", prefix: "" }, "x", data.length, 0o644, "");
    yield data;
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad > 0) yield Buffer.alloc(pad);
  }
  const fallback = { name: truncate(path.posix.basename(name), 99) + (name.endsWith("/") ? "/" : ""), prefix: "" };
  yield ustarHeader(split ?? fallback, type, size, mode, linkFits ? link : truncate(link, 100));
}

function splitName(name: string): { name: string; prefix: string } | undefined {
  if (Buffer.byteLength(name) <= 100) return { name, prefix: "" };
  // ustar: prefix (up to 155 bytes) + "/" + name (up to 100 bytes), split at a slash.
  for (let i = name.indexOf("/"); i !== -1; i = name.indexOf("/", i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== "" && rest !== "/")
      return { name: rest, prefix };
  }
  return undefined;
}

function truncate(s: string, bytes: number): string {
  let out = s;
  while (Buffer.byteLength(out) > bytes) out = out.slice(0, -1);
  return out;
}

function paxRecord(key: string, value: string): string {
  // "<length> <key>=<value>\n", where the length counts itself.
  const body = ` ${key}=${value}\n`;
  const bodyLength = Buffer.byteLength(body);
  let length = bodyLength + 1;
  while (String(length).length + bodyLength !== length) length = String(length).length + bodyLength;
  return `${length}${body}`;
}

function ustarHeader(
  n: { name: string; prefix: string },
  type: "0" | "2" | "5" | "x",
  size: number,
  mode: number,
  link: string,
): Buffer {
  const h = Buffer.alloc(BLOCK);
  const str = (value: string, offset: number, length: number) => h.write(value, offset, length, "utf8");
  const oct = (value: number, offset: number, length: number) =>
    str(`${value.toString(8).padStart(length - 1, "0")}\0`, offset, length);
  if (size > 0o77777777777) throw new Error(`${n.name}: too large for a tar entry`);
  str(n.name, 0, 100);
  oct(mode, 100, 8);
  oct(0, 108, 8); // uid
  oct(0, 116, 8); // gid
  oct(size, 124, 12);
  oct(0, 136, 12); // mtime
  str(" ".repeat(8), 148, 8); // checksum, counted as spaces
  str(type, 156, 1);
  str(link, 157, 100);
  str("ustar\u000000", 257, 8);
  str("root", 265, 32);
  str("root", 297, 32);
  oct(0, 329, 8);
  oct(0, 337, 8);
  str(n.prefix, 345, 155);
  let sum = 0;
  for (const b of h) sum += b;
  str(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8);
  return h;
}

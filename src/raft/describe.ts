import type { Ready } from "./rawnode.js";
import type { Entry, Message, Snapshot } from "./types.js";

/** Human-readable renderings for logs, transcripts and failing-seed reports. */

function text(data: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(data));
}

export function describeEntry(e: Entry): string {
  return `${e.term}/${e.index} ${e.type === "confChange" ? "ConfChange" : "Normal"} ${text(e.data)}`;
}

export function describeSnapshot(s: Snapshot): string {
  const cs = s.metadata.confState;
  const learners = cs.learners.length > 0 ? ` learners=(${cs.learners.join(" ")})` : "";
  return `index=${s.metadata.index} term=${s.metadata.term} voters=(${cs.voters.join(" ")})${learners}`;
}

export function describeMessage(m: Message): string {
  let s = `${m.from}->${m.to} ${m.type} Term:${m.term}`;
  if (m.logTerm !== 0 || m.index !== 0) s += ` Log:${m.logTerm}/${m.index}`;
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.commit !== 0) s += ` Commit:${m.commit}`;
  if (m.commitOnly) s += " CommitOnly";
  if (m.durable !== undefined) s += ` Durable:${m.durable}`;
  if (m.entries.length > 0) s += ` Entries:[${m.entries.map(describeEntry).join(", ")}]`;
  if (m.context.length > 0) s += ` Ctx:${text(m.context)}`;
  if (m.snapshot !== undefined) s += ` Snapshot: ${describeSnapshot(m.snapshot)}`;
  return s;
}

export function describeReady(rd: Ready): string {
  const lines: string[] = [`Ready MustSync=${rd.mustSync}:`];
  if (rd.softState !== undefined) lines.push(`Lead:${rd.softState.lead} State:${rd.softState.raftState}`);
  if (rd.hardState !== undefined) {
    lines.push(`HardState Term:${rd.hardState.term} Vote:${rd.hardState.vote} Commit:${rd.hardState.commit}`);
  }
  if (rd.entries.length > 0) lines.push("Entries:", ...rd.entries.map(describeEntry));
  if (rd.snapshot !== undefined) lines.push(`Snapshot ${describeSnapshot(rd.snapshot)}`);
  if (rd.committedEntries.length > 0) lines.push("CommittedEntries:", ...rd.committedEntries.map(describeEntry));
  if (rd.messages.length > 0) lines.push("Messages:", ...rd.messages.map(describeMessage));
  if (rd.readStates.length > 0) {
    lines.push("ReadStates:", ...rd.readStates.map((rs) => `index=${rs.index} ctx=${text(rs.requestCtx)}`));
  }
  return lines.join("\n");
}

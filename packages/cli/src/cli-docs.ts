// The CLI reference in README.md, generated from the commander definitions (the same source as `--help`), so the
// two cannot drift: `npm run docs -w @int21/cli` rewrites the block between the markers, and a test fails when
// the README and `--help` disagree.
import type { Command, Help } from "commander";

/** The line that opens the generated block in README.md. */
export const DOCS_START =
  "<!-- cli-reference:start — generated from the commander definitions by `npm run docs -w @int21/cli`; do not edit by hand -->";
/** The line that closes the generated block. */
export const DOCS_END = "<!-- cli-reference:end -->";

/** One option as documented: its flags, its default (as `--help` prints it; "" for none) and its description. */
export interface OptionDoc {
  term: string;
  default: string;
  description: string;
}

/** One command as documented. */
export interface CommandDoc {
  name: string;
  usage: string;
  description: string;
  arguments: { term: string; description: string }[];
  options: OptionDoc[];
}

/** The index of the `(` that opens the parenthesized group `text` ends with, or -1. */
function lastGroupStart(text: string): number {
  if (!text.endsWith(")")) return -1;
  let depth = 0;
  for (let i = text.length - 1; i >= 0; i--) {
    if (text[i] === ")") depth++;
    else if (text[i] === "(" && --depth === 0) return i;
  }
  return -1;
}

/**
 * Splits an option's help description (as commander prints it) into the description and the default: the
 * default is read from the parenthesized group the text ends with — commander's `(…, default: X)` or a
 * hand-written `(default: X)`, `(default X)` or `(…; default X)` — and removed from the description.
 */
export function splitDefault(helpDescription: string): { description: string; default: string } {
  const text = helpDescription.trim();
  const start = lastGroupStart(text);
  if (start < 0) return { description: text, default: "" };
  const group = text.slice(start + 1, -1);
  const m = /(^|[,;] )default:? (.*)$/s.exec(group);
  if (!m) return { description: text, default: "" };
  const rest = group.slice(0, m.index);
  const before = text.slice(0, start).trimEnd();
  return {
    description: rest === "" ? before : `${before} (${rest})`.trim(),
    default: m[2].trim(),
  };
}

/** The documentation of one commander program, read through commander's own help formatter. */
export function commandDoc(name: string, program: Command): CommandDoc {
  const help: Help = program.createHelp();
  return {
    name,
    usage: `int21 ${help.commandUsage(program)}`,
    description: help.commandDescription(program),
    arguments: help.visibleArguments(program).map((a) => ({
      term: help.argumentTerm(a),
      description: help.argumentDescription(a),
    })),
    options: help
      .visibleOptions(program)
      .filter((o) => o.long !== "--help")
      .map((o) => ({ term: help.optionTerm(o), ...splitDefault(help.optionDescription(o)) })),
  };
}

/** Escapes text for a Markdown table cell (outside a code span). */
export function escapeCell(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\|/g, "\\|");
}

/** The inverse of {@link escapeCell}. */
export function unescapeCell(s: string): string {
  return s.replace(/\\\|/g, "|").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function code(s: string): string {
  return s === "" ? "" : `\`${s.replace(/\|/g, "\\|")}\``;
}

/** The Markdown of the generated block (without the markers): one section per command with its options table. */
export function renderCliReference(commands: readonly CommandDoc[]): string {
  const out: string[] = [];
  for (const c of commands) {
    out.push(`### \`${c.name}\``, "", `\`${c.usage}\` — ${escapeCell(c.description)}`, "");
    for (const a of c.arguments) out.push(`- \`<${a.term}>\`: ${escapeCell(a.description)}`);
    if (c.arguments.length > 0) out.push("");
    out.push("| option | default | description |", "| --- | --- | --- |");
    for (const o of c.options)
      out.push(`| ${code(o.term)} | ${code(o.default)} | ${escapeCell(o.description)} |`);
    out.push("");
  }
  return out.join("\n");
}

/**
 * `readme` with the text between {@link DOCS_START} and {@link DOCS_END} replaced by `generated`. Throws when the
 * markers are missing or out of order.
 */
export function replaceGenerated(readme: string, generated: string): string {
  const a = readme.indexOf(DOCS_START);
  const b = readme.indexOf(DOCS_END);
  if (a < 0 || b < a)
    throw new Error(`README: the markers ${DOCS_START} … ${DOCS_END} are missing or out of order`);
  return `${readme.slice(0, a + DOCS_START.length)}\n\n${generated.trimEnd()}\n\n${readme.slice(b)}`;
}

/** The generated block of `readme` (between the markers), or undefined. */
export function generatedBlock(readme: string): string | undefined {
  const a = readme.indexOf(DOCS_START);
  const b = readme.indexOf(DOCS_END);
  return a < 0 || b < a ? undefined : readme.slice(a + DOCS_START.length, b);
}

/**
 * Parses the generated block back into `{ command → options }` (what the README claims), for the test that
 * compares it with `--help`.
 */
export function parseCliReference(block: string): Map<string, OptionDoc[]> {
  const out = new Map<string, OptionDoc[]>();
  let current: OptionDoc[] | undefined;
  for (const line of block.split("\n")) {
    const h = /^### `([\w-]+)`$/.exec(line);
    if (h) {
      current = [];
      out.set(h[1], current);
      continue;
    }
    if (!current || !line.startsWith("| ") || line.startsWith("| option ") || line.startsWith("| ---"))
      continue;
    const cells = line
      .slice(2, -2)
      .split(/ (?<!\\)\| /)
      .map((c) => c.trim());
    const uncode = (c: string) =>
      c.startsWith("`") && c.endsWith("`") ? c.slice(1, -1).replace(/\\\|/g, "|") : c;
    current.push({
      term: uncode(cells[0]),
      default: uncode(cells[1] ?? ""),
      description: unescapeCell(cells[2] ?? ""),
    });
  }
  return out;
}

/**
 * Parses a command's `--help` output into its options (unwrapping continuation lines; `-h, --help` left out), with
 * defaults split off by {@link splitDefault}.
 */
export function parseHelpOptions(helpText: string): OptionDoc[] {
  const lines = helpText.split("\n");
  const at = lines.findIndex((l) => l.trim() === "Options:");
  if (at < 0) return [];
  const items: { term: string; text: string }[] = [];
  for (const line of lines.slice(at + 1)) {
    if (line.trim() === "" || !line.startsWith("  ")) break;
    const m = /^ {2}(-\S.*?)(?: {2,}(.*))?$/.exec(line);
    if (m && !/^ {3}/.test(line)) items.push({ term: m[1].trim(), text: (m[2] ?? "").trim() });
    else if (items.length > 0) items[items.length - 1].text += ` ${line.trim()}`;
  }
  return items
    .filter((i) => !/(^|, )--help$/.test(i.term))
    .map((i) => ({ term: i.term, ...splitDefault(i.text) }));
}

const norm = (s: string) => s.replace(/\s+/g, " ").trim();

/**
 * The disagreements between the options a README section documents and those `--help` prints: an option on one
 * side only, or a different default or description. Empty when they agree.
 */
export function compareOptionDocs(command: string, readme: OptionDoc[], help: OptionDoc[]): string[] {
  const out: string[] = [];
  const byTerm = new Map(readme.map((o) => [o.term, o]));
  for (const h of help) {
    const r = byTerm.get(h.term);
    if (!r) {
      out.push(`${command}: ${h.term} is in --help but not in the README`);
      continue;
    }
    byTerm.delete(h.term);
    if (norm(r.default) !== norm(h.default))
      out.push(`${command}: ${h.term} defaults to "${h.default}" in --help, "${r.default}" in the README`);
    if (norm(r.description) !== norm(h.description))
      out.push(
        `${command}: ${h.term} is described as "${norm(h.description)}" in --help, "${norm(r.description)}" in the README`,
      );
  }
  for (const term of byTerm.keys()) out.push(`${command}: ${term} is in the README but not in --help`);
  return out;
}

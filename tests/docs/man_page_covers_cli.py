#!/usr/bin/env python3
"""custodyctl(1) documents every command and option the binary has.

Walks `custodyctl --help` down every subcommand (CLI11's help lists them), and for each leaf
command checks that the man page has its definition line (a line starting with the command's
words in bold, as `*keys create*`, or `*keys rotate*|*enable*|...` for a group) and that every
long option the command takes appears on that line. Also runs scdoc on the page when it is
installed, so a page scdoc cannot render fails here rather than in scripts/package.

    man_page_covers_cli.py CUSTODYCTL MAN_PAGE.scd
"""
import re
import shutil
import subprocess
import sys

GLOBAL_OPTIONS = {"--help", "--socket", "--admin-socket", "--json", "--version"}


def help_of(binary, path):
    run = subprocess.run([binary, *path, "--help"], capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        sys.exit(f"`custodyctl {' '.join(path)} --help` failed: {run.stderr}")
    return run.stdout


def sections(text):
    """{"Options": [lines], "Subcommands": [lines]} of one help text."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^(\w[\w ]*):\s*$", line)
        if m:
            current = m.group(1)
            out[current] = []
        elif current and line.startswith("  "):
            out[current].append(line)
        elif not line.strip():
            current = None
    return out


def option_names(line):
    """The names an option line of the help defines: "  -f,--follow  ..." gives {-f, --follow}."""
    if not re.match(r"^  -", line):
        return set()
    spec = line.strip().split("  ")[0].split(" ")[0]
    return {re.sub(r"\{.*\}$", "", n) for n in spec.split(",") if n.startswith("-")}


def commands(binary, path=()):
    """(path, [names of each option]) for every command that can run: leaves, and groups with
    options of their own (attest)."""
    parts = sections(help_of(binary, list(path)))
    subs = [m.group(1) for l in parts.get("Subcommands", []) if (m := re.match(r"^  (\S+)", l))]
    options = [names for l in parts.get("Options", []) if (names := option_names(l)) and not names & GLOBAL_OPTIONS]
    found = [(path, options)] if path and (options or not subs) else []
    for sub in subs:
        found.extend(commands(binary, (*path, sub)))
    return found


def definition_lines(page):
    return [l for l in page.splitlines() if l.startswith("*")]


def covers(line, path):
    spans = [w.strip() for w in re.findall(r"\*([^*]+)\*", line)]
    if " ".join(path) in spans:
        return True
    # "*keys rotate*|*enable*|*disable*": the group's words, then the leaf among the alternatives.
    head = spans[0].split() if spans else []
    return len(path) >= 2 and head[:-1] == list(path[:-1]) and path[-1] in spans[1:]


def main():
    binary, page_path = sys.argv[1], sys.argv[2]
    page = open(page_path, encoding="utf-8").read()
    lines = definition_lines(page)
    problems = []
    leaves = commands(binary)
    for path, options in leaves:
        matching = [l for l in lines if covers(l, path)]
        if not matching:
            problems.append(f"custodyctl {' '.join(path)}: no definition line in {page_path}")
            continue
        for names in options:
            if not any(re.search(r"\*(" + "|".join(map(re.escape, names)) + r")\*", l) for l in matching):
                problems.append(f"custodyctl {' '.join(path)}: option {'/'.join(sorted(names))} is not on its line "
                                f"in {page_path}")
    if shutil.which("scdoc"):
        render = subprocess.run(["scdoc"], input=page, capture_output=True, text=True)
        if render.returncode != 0:
            problems.append(f"scdoc cannot render {page_path}: {render.stderr.strip()}")
    if len(leaves) < 20:
        problems.append(f"only {len(leaves)} commands found in the help: the walk is broken")
    for p in problems:
        print(p)
    print(f"{len(leaves)} commands checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Runs the shell blocks of README.md and docs/*.md, so a documented command that stops working
fails the build.

Which blocks run, by the fence's info string:
  ```sh  or  ```bash          executed
  ```sh example               shown only: needs what CI cannot have (a real HSM, systemctl on the
                              host), or is a fragment with placeholders
  ```text / console / yaml / json / python / ...   never executed
  ``` (no info string)        allowed only when it does not look like shell; a shell-looking block
                              without a marking fails the run, so nobody adds an unmarked command
Any other word after sh/bash (a typo such as "sh exmaple") also fails the run, and so does a
relative link that names no file of the repository (or no heading of a Markdown file).

How they run:
  - One fresh dev instance for the whole run: scripts/dev-up with CUSTODY_DEV_DIR=<tmp>/ws/.dev
    (the repository's own .dev/ is never touched), stopped at the end with `dev-up --stop` and the
    same environment. With --build-dir, CUSTODY_BUILD_DIR makes dev-up use the custodyd and
    custodyctl of the build under test (ctest passes its own build directory) instead of
    bootstrapping and building into build/.
  - Each file gets one bash with `set -euo pipefail`, stdin from /dev/null, the blocks in file
    order, and `.dev/env` already sourced (the docs say to source it once).
  - The working directory is a scratch workspace <tmp>/ws that looks like the repository root to
    the blocks: every top-level entry of the repository is a symlink there, except scripts/, whose
    files are small wrappers that exec the real scripts (the one for dev-up sets CUSTODY_DEV_DIR
    itself, so `scripts/dev-up` in a block always means the scratch instance), and .dev/, which is the instance's own directory.
    A block that says `.dev/audit.jsonl` or writes `secret.ct` therefore works exactly as written
    and leaves nothing behind in the repository: no text in a block is rewritten.
  - On failure: the file, the block number, the Markdown line of the failing command, the block and
    its output, and the end of the dev daemon's log.

--no-dev runs blocks without a dev instance (the runner's own test uses it on small fixtures);
scripts/dev-up then refuses, so a block can never reach the repository's own .dev/.
Exit status: 0 every block passed, 1 a block failed or a block is unmarked, 2 the run could not start.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

EXECUTED = {"sh", "bash"}
SHELL_WORDS = {
    "apt", "apt-get", "base64", "bash", "cat", "cd", "chmod", "chown", "cmake", "cp", "curl",
    "custodyctl", "custodyd", "custody-bench", "dd", "echo", "env", "export", "git", "grep", "groupadd",
    "head", "install", "jq", "kill", "ln", "ls", "mkdir", "mv", "openssl", "pkcs11-tool", "printf",
    "python3", "rm", "sed", "set", "sh", "softhsm2-util", "sudo", "systemctl", "systemd-creds",
    "tail", "tee", "touch", "useradd", "usermod", "xxd",
}


class Block:
    def __init__(self, path, index, line, info, lines):
        self.path, self.index, self.line, self.info, self.lines = path, index, line, info, lines

    def text(self):
        return "\n".join(self.lines)


def parse_blocks(path):
    """Fenced blocks of a Markdown file: ``` or ~~~, possibly indented (inside list items)."""
    blocks = []
    with open(path, encoding="utf-8") as f:
        source = f.read().split("\n")
    i = 0
    while i < len(source):
        m = re.match(r"^( *)(`{3,}|~{3,})(.*)$", source[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        start = i + 1  # 1-based line of the first content line is start + 1
        body = []
        i += 1
        while i < len(source):
            close = re.match(r"^ *(`{3,}|~{3,})\s*$", source[i])
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                break
            line = source[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        blocks.append(Block(path, len(blocks) + 1, start + 1, info, body))
        i += 1
    return blocks


def looks_like_shell(block):
    for raw in block.lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"^\$\s+", "", line)
        first = line.split()[0]
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", first):  # VAR=value command
            return True
        if first in SHELL_WORDS or first in {".", "source"} or first.startswith(("scripts/", "./", "build/")):
            return True
    return False


def classify(block):
    """'run', 'skip', or an error message."""
    words = block.info.split()
    if not words:
        return "unmarked: mark it ```sh (run in CI), ```sh example (shown only) or ```text" \
            if looks_like_shell(block) else "skip"
    if words[0] in EXECUTED:
        if len(words) == 1:
            return "run"
        if words[1:] == ["example"]:
            return "skip"
        return "unknown marking '" + block.info + "': use ```" + words[0] + " or ```" + words[0] + " example"
    return "skip"


def heading_anchors(path):
    """GitHub's anchors for the headings of a Markdown file (outside fenced blocks)."""
    anchors, fenced = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if re.match(r"^ *(`{3,}|~{3,})", line):
                fenced = not fenced
            m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
                anchors.add(slug)
    return anchors


def check_links(repo, path, rel):
    """Relative links must name a file of the repository (and an existing heading when they give one)."""
    problems = []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"(?ms)^ *(`{3,}|~{3,}).*?^ *\1\s*$", "", text)  # links in code blocks are not links
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if os.path.commonpath([linked, repo]) != repo:
            problems.append("%s: link %s leaves the repository" % (rel, target))
        elif not os.path.exists(linked):
            problems.append("%s: link %s: no such file" % (rel, target))
        elif anchor and linked.endswith(".md") and anchor not in heading_anchors(linked):
            problems.append("%s: link %s: no heading with that anchor" % (rel, target))
    return problems


def make_workspace(repo, ws, dev_up):
    """A directory that looks like the repository root to the blocks (see the header)."""
    os.makedirs(ws)
    for name in os.listdir(repo):
        if name in {".dev", ".git", "scripts"} or name == "build" or name.startswith("build-"):
            continue
        os.symlink(os.path.join(repo, name), os.path.join(ws, name))
    scripts = os.path.join(ws, "scripts")
    os.makedirs(scripts)
    for name in os.listdir(os.path.join(repo, "scripts")):
        wrapper = os.path.join(scripts, name)
        with open(wrapper, "w") as f:
            if name == "dev-up" and dev_up is None:
                # Without a dev instance, dev-up would fall back to the repository's own .dev/.
                f.write('#!/usr/bin/env bash\necho "run_doc_blocks: --no-dev: scripts/dev-up is not available" >&2\nexit 1\n')
            elif name == "dev-up":
                # Never the repository's own .dev/, whatever the block exported.
                f.write('#!/usr/bin/env bash\nexport CUSTODY_DEV_DIR="%s"\nexec "%s" "$@"\n' % (os.path.join(ws, ".dev"), dev_up))
            else:
                f.write('#!/usr/bin/env bash\nexec "%s" "$@"\n' % os.path.join(repo, "scripts", name))
        os.chmod(wrapper, 0o755)


def build_script(blocks, out_dir, status_file, env_file):
    """One bash program for a file: returns it and the Markdown line of each program line."""
    lines = ["set -euo pipefail", "__block=0",
             "trap 'echo \"err $__block $LINENO\" >> \"%s\"' ERR" % status_file,
             "trap '__rc=$?; echo \"exit $__block $__rc\" >> \"%s\"' EXIT" % status_file]
    if env_file:
        lines.append('if [ -f "%s" ]; then . "%s"; fi' % (env_file, env_file))
    origin = [None] * len(lines)
    for b in blocks:
        lines.append("__block=%d" % b.index)
        origin.append(None)
        lines.append("{")
        origin.append(None)
        for n, text in enumerate(b.lines):
            lines.append(text)
            origin.append(b.line + n)
        lines.append('} > "%s/%d.out" 2>&1 < /dev/null' % (out_dir, b.index))
        origin.append(None)
    lines.append("__block=done")
    origin.append(None)
    return "\n".join(lines) + "\n", origin


def run_file(path, blocks, ws, tmp, env, timeout, display):
    name = re.sub(r"[^A-Za-z0-9]", "_", display)
    out_dir = os.path.join(tmp, "out", name)
    os.makedirs(out_dir)
    status_file = os.path.join(out_dir, "status")
    env_file = os.path.join(env["CUSTODY_DEV_DIR"], "env") if "CUSTODY_DEV_DIR" in env else None
    script, origin = build_script(blocks, out_dir, status_file, env_file)
    script_path = os.path.join(out_dir, "blocks.sh")
    with open(script_path, "w") as f:
        f.write(script)
    started = time.monotonic()
    proc = subprocess.Popen(["bash", script_path], cwd=ws, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        stray, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stray, _ = proc.communicate()
        print("%s: TIMED OUT after %d s" % (display, timeout))
    elapsed = time.monotonic() - started
    status = open(status_file).read().split("\n") if os.path.exists(status_file) else []
    exits = [s.split() for s in status if s.startswith("exit ")]
    errs = [s.split() for s in status if s.startswith("err ")]
    if proc.returncode == 0 and exits and exits[-1][1] == "done":
        print("%s: %d block(s) passed in %.1f s" % (display, len(blocks), elapsed))
        return True
    failed = exits[-1][1] if exits else "?"
    block = next((b for b in blocks if str(b.index) == failed), None)
    line = "?"
    if errs and errs[-1][1] == failed:
        program_line = int(errs[-1][2])
        if 0 < program_line <= len(origin) and origin[program_line - 1]:
            line = str(origin[program_line - 1])
    print("=" * 72)
    print("FAILED: %s, block %s (starts at line %s), failing command at line %s, exit status %s"
          % (display, failed, block.line if block else "?", line, exits[-1][2] if exits else proc.returncode))
    if block:
        print("--- the block:")
        for n, text in enumerate(block.lines):
            print("%5d | %s" % (block.line + n, text))
        out = os.path.join(out_dir, "%s.out" % failed)
        print("--- its output:")
        print(open(out, errors="replace").read() if os.path.exists(out) else "(none)")
    if stray:
        print("--- other output:")
        print(stray.decode(errors="replace"))
    print("=" * 72)
    return False


def default_files(repo):
    docs = os.path.join(repo, "docs")
    names = sorted(n for n in os.listdir(docs) if n.endswith(".md")) if os.path.isdir(docs) else []
    # The tour first: the other guides start from the instance it sets up.
    first = [n for n in ("README.md", "getting-started.md") if n in names]
    return ["README.md"] + ["docs/" + n for n in first + [n for n in names if n not in first]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    parser.add_argument("--build-dir", help="the build under test (passed to dev-up as CUSTODY_BUILD_DIR)")
    parser.add_argument("--dev-up", help="the dev-up script (default: REPO/scripts/dev-up)")
    parser.add_argument("--no-dev", action="store_true", help="run the blocks without a dev instance")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per file (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (the workspace, .dev/, each block's output)")
    parser.add_argument("files", nargs="*", help="Markdown files relative to REPO (default: README.md docs/*.md)")
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    dev_up = os.path.abspath(args.dev_up or os.path.join(repo, "scripts", "dev-up"))
    files = args.files or default_files(repo)

    # Classify everything first: an unmarked block fails the run before anything starts.
    plan, problems = [], []
    for rel in files:
        path = rel if os.path.isabs(rel) else os.path.join(repo, rel)
        runnable = []
        for b in parse_blocks(path):
            verdict = classify(b)
            if verdict == "run":
                runnable.append(b)
            elif verdict != "skip":
                problems.append("%s:%d: block %d: %s" % (rel, b.line - 1, b.index, verdict))
        plan.append((rel, runnable))
        problems += check_links(repo, path, rel)
    if problems:
        print("\n".join(problems))
        return 1

    if not args.no_dev:
        with open(dev_up) as f:
            if "CUSTODY_DEV_DIR" not in f.read():
                print("run_doc_blocks: %s does not honour CUSTODY_DEV_DIR; refusing to run it (it would use "
                      "the repository's own .dev/)" % dev_up)
                return 2

    tmp = tempfile.mkdtemp(prefix="custody-docs-")
    ws = os.path.join(tmp, "ws")
    make_workspace(repo, ws, None if args.no_dev else dev_up)
    env = dict(os.environ)
    for inherited in ("CUSTODY_SERVICE_SOCKET", "CUSTODY_ADMIN_SOCKET", "CUSTODY_CONFIG", "CUSTODY_DEV_DIR"):
        env.pop(inherited, None)
    if args.build_dir:
        env["CUSTODY_BUILD_DIR"] = os.path.abspath(args.build_dir)
    ok = True
    started = time.monotonic()
    try:
        if not args.no_dev:
            env["CUSTODY_DEV_DIR"] = os.path.join(ws, ".dev")
            up = subprocess.run([os.path.join(ws, "scripts", "dev-up")], cwd=ws, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=args.timeout)
            if up.returncode != 0:
                print("run_doc_blocks: scripts/dev-up failed (exit %d):\n%s" % (up.returncode, up.stdout.decode(errors="replace")))
                return 2
            print("dev instance up in %.1f s (%s)" % (time.monotonic() - started, env["CUSTODY_DEV_DIR"]))
        for rel, runnable in plan:
            if not runnable:
                print("%s: no blocks to run" % rel)
                continue
            if not run_file(rel, runnable, ws, tmp, env, args.timeout, rel):
                ok = False
                log = os.path.join(ws, ".dev", "custodyd.log")
                if os.path.exists(log):
                    print("--- the end of the dev daemon's log:")
                    print("".join(open(log, errors="replace").readlines()[-15:]))
    finally:
        if not args.no_dev:
            subprocess.run([os.path.join(ws, "scripts", "dev-up"), "--stop"], cwd=ws, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        if args.keep:
            print("scratch directory kept: %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("run_doc_blocks: %s in %.1f s" % ("all blocks passed" if ok else "FAILED", time.monotonic() - started))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

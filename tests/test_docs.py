"""The docs stay true to the code: README.md and docs/*.md are parsed (no model is loaded).

- every relative link resolves to a file, and a `#anchor` to a heading of its target;
- every CLI a doc names (in a code block: `python path/to/script.py ...`, `python -m module ...`, `bash X.sh ...`; in
  inline code: a span that passes flags to one) exists and answers `--help` with exit 0. A `bash` script counts
  through the command it forwards its arguments to ("$@": scripts/quickstart.sh -> scripts/quickstart.py,
  scripts/test.sh -> python -m pytest, script_short_learning.sh -> multi_agent/finetune.py, ...); the shell script
  itself is never run (setup_env.sh would install .venv). A Python script is run with --help only when it builds
  an argument parser, so a script that would ignore --help and start working is reported, never started;
- every `--flag` a doc passes to one of those CLIs appears in that CLI's --help output.

Each distinct CLI's --help runs once, in parallel threads, with HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 and RUN_DIR /
SMART_DATA pointed at a scratch folder. Failures name the doc file and line.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
PYTHONS = {"python", "python3", "$PY", "$PYTHON", "${PYTHON}"}
OPERATORS = {";", "&", "&&", "|", "||", "(", ")", "<", ">", ">>"}
SKIP_WORDS = {"do", "then", "else", "time", "exec", "nohup"}
FLAG = re.compile(r"^--[A-Za-z0-9][\w-]*$")
HELP_FLAG = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
SCRIPT = re.compile(r"^[\w./-]+\.(py|sh)$")
HELP_TIMEOUT_S = 120


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ---------------------------------------------------------------------------------------------- markdown parsing
@dataclass
class Doc:
    path: Path
    blocks: list[tuple[str, list[tuple[int, str]]]]  # (language, [(line number, text)])
    prose: list[tuple[int, str]]                     # lines outside fenced blocks


@lru_cache(maxsize=None)
def parse(path: Path) -> Doc:
    blocks, prose, current, lang, fence = [], [], None, "", ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if current is None:
            opening = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if opening:
                fence, lang, current = opening.group(1), opening.group(2).lower(), []
            else:
                prose.append((number, line))
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            blocks.append((lang, current))
            current = None
        else:
            current.append((number, line))
    assert current is None, f"{rel(path)}: a code block opened with {fence} is never closed"
    return Doc(path, blocks, prose)


def paragraphs(doc: Doc) -> list[tuple[int, str]]:
    """Prose joined into paragraphs (inline code may wrap across lines), each with its first line number."""
    out, start, lines, last = [], 0, [], -1
    for number, line in doc.prose:
        if not line.strip() or number != last + 1:
            if lines:
                out.append((start, "\n".join(lines)))
            start, lines = number, []
        if line.strip():
            if not lines:
                start = number
            lines.append(line)
        last = number
    if lines:
        out.append((start, "\n".join(lines)))
    return out


def inline_code(doc: Doc) -> list[tuple[int, str]]:
    """(line number, text) of every inline code span."""
    spans = []
    for start, text in paragraphs(doc):
        for m in re.finditer(r"(`+)(.+?)\1", text, flags=re.S):
            spans.append((start + text.count("\n", 0, m.start()), m.group(2).replace("\n", " ")))
    return spans


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in parse(path).prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


# ---------------------------------------------------------------------------------------------- links
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def link_problems(doc: Doc) -> list[str]:
    problems = []
    for start, text in paragraphs(doc):
        text = re.sub(r"(`+).+?\1", lambda m: " " * len(m.group(0)), text, flags=re.S)  # links inside code don't count
        for m in LINK.finditer(text):
            target = m.group(1)
            where = f"{rel(doc.path)}:{start + text.count(chr(10), 0, m.start())}"
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            path = (doc.path.parent / file_part).resolve() if file_part else doc.path
            if not path.exists():
                problems.append(f"{where}: link '{target}' -> {file_part} does not exist")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                problems.append(f"{where}: link '{target}' -> no heading '#{anchor}' in {rel(path)} "
                                f"(headings: {', '.join(sorted(anchors(path)))})")
    return problems


def test_relative_links_resolve():
    problems = [p for doc in DOCS for p in link_problems(parse(doc))]
    assert not problems, "broken links in the docs:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Cli:
    kind: str  # "script" (a Python file, repo-relative) or "module" (python -m)
    name: str

    def __str__(self) -> str:
        return f"python -m {self.name}" if self.kind == "module" else self.name


@dataclass
class Use:
    where: str          # doc:line
    named: str          # as the doc names it (e.g. bash scripts/quickstart.sh)
    cli: Cli | None     # what answers for it (None: a shell script that forwards no arguments)
    flags: list[str]
    args: list[str]
    problem: str = ""   # set when the doc names something that cannot run


def logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Code-block lines with backslash continuations joined and comments dropped."""
    out, buffer, start = [], "", 0
    for number, line in lines:
        if not buffer:
            start = number
        code = strip_comment(line)
        if code.rstrip().endswith("\\"):
            buffer += code.rstrip()[:-1] + " "
            continue
        out.append((start, buffer + code))
        buffer = ""
    if buffer:
        out.append((start, buffer))
    return out


def strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def segments(words: list[str]) -> list[list[str]]:
    out, current = [], []
    for w in words:
        if w in OPERATORS:
            out.append(current)
            current = []
        else:
            current.append(w)
    return [s for s in out + [current] if s]


def script_path(token: str, bare_ok: bool) -> Path | None:
    """A script token as a repo path; a bare file name (inline code: `finetune.py --flag`) when it is unique."""
    path = REPO / token
    if path.is_file():
        return path
    if bare_ok and "/" not in token:
        matches = [p for p in cli_scripts() if p.name == token]
        if len(matches) == 1:
            return matches[0]
    return None


@lru_cache(maxsize=None)
def cli_scripts() -> tuple[Path, ...]:
    found = [*REPO.glob("*.py"), *REPO.glob("*.sh")]
    for folder in ("multi_agent", "data_creation", "eval", "scripts", "bench"):
        found += [*(REPO / folder).glob("*.py"), *(REPO / folder).glob("*.sh")]
    return tuple(sorted(found))


@lru_cache(maxsize=None)
def forwarded(sh: Path) -> tuple[str, str] | None:
    """What a shell script hands its arguments ("$@") to: ("script", path), ("module", name), or None."""
    for line in sh.read_text(encoding="utf-8").splitlines():
        code = strip_comment(line)
        if '"$@"' not in code:
            continue
        words = code.replace('"$@"', " ").split()
        for i, w in enumerate(words):
            if w == "bash" and i + 1 < len(words) and words[i + 1].endswith(".sh"):
                return forwarded((sh.parent / words[i + 1]).resolve())
            if w.endswith(".py") and (REPO / w).is_file():
                return ("script", w)
            if w == "-m" and i + 1 < len(words) and not words[i + 1].startswith("accelerate"):
                return ("module", words[i + 1])
    return None


def has_parser(script: str) -> bool:
    return bool(re.search(r"ArgumentParser|HfArgumentParser", (REPO / script).read_text(encoding="utf-8")))


def interpret(words: list[str], where: str, bare_ok: bool) -> Use | None:
    """One simple command -> the CLI it runs and the flags it passes, or None when it runs none of ours."""
    i = 0
    while i < len(words) and (ASSIGNMENT.match(words[i]) or words[i] in SKIP_WORDS):
        i += 1
    if i >= len(words):
        return None
    head, rest = words[i], words[i + 1:]
    if head in PYTHONS or head.endswith("/python") or head.endswith("/python3"):
        if rest[:1] == ["-m"] and len(rest) > 1:
            return use(where, f"python -m {rest[1]}", Cli("module", rest[1]), rest[2:])
        if rest and SCRIPT.match(rest[0]):
            return script_use(where, rest[0], rest[1:], bare_ok)
        return None
    if head in ("bash", "sh") and rest and rest[0].endswith(".sh"):
        return script_use(where, rest[0], rest[1:], bare_ok, via=f"{head} ")
    if SCRIPT.match(head) and ("/" in head or bare_ok):
        return script_use(where, head, rest, bare_ok)
    return None


def use(where: str, named: str, cli: Cli | None, args: list[str], problem: str = "") -> Use:
    flags = []
    for a in args:
        for part in a.strip("[],()").split("/"):  # `--bf16/--fp16`, `[--n N]`
            part = part.split("=", 1)[0]
            if FLAG.match(part):
                flags.append(part)
    return Use(where, named, cli, flags, args, problem)


def script_use(where: str, token: str, args: list[str], bare_ok: bool, via: str = "") -> Use:
    named = f"{via}{token}"
    path = script_path(token, bare_ok)
    if path is None:
        return use(where, named, None, args, f"{token} does not exist")
    name = rel(path)
    if path.suffix == ".py":
        if not has_parser(name):
            return use(where, named, None, args, f"{name} builds no argument parser, so it does not answer --help")
        return use(where, named, Cli("script", name), args)
    target = forwarded(path)
    if target is None:
        problem = f"{name} passes no arguments on, yet the doc gives it {' '.join(args)}" if any(
            a.startswith("-") for a in args) else ""
        return use(where, named, None, args, problem)
    kind, target_name = target
    if kind == "script" and not has_parser(target_name):
        problem = (f"{name} hands its arguments to {target_name}, which builds no argument parser (it ignores "
                   f"them), yet the doc gives it {' '.join(args)}") if args else ""
        return use(where, named, None, args, problem)
    return use(where, named, Cli(kind, target_name), args)


def doc_uses(doc: Doc) -> list[Use]:
    out = []
    for lang, lines in doc.blocks:
        if lang not in SHELL_LANGS:
            continue
        for number, text in logical_lines(lines):
            where = f"{rel(doc.path)}:{number}"
            try:
                words = tokens(text)
            except ValueError as e:
                out.append(Use(where, text.strip(), None, [], [], f"cannot parse the command ({e})"))
                continue
            out += [u for seg in segments(words) if (u := interpret(seg, where, bare_ok=False))]
    for number, text in inline_code(doc):
        try:
            words = tokens(text)
        except ValueError:
            words = text.split()
        for seg in segments(words):
            u = interpret(seg, f"{rel(doc.path)}:{number}", bare_ok=True)
            if u and u.flags:
                out.append(u)  # inline code counts where it passes flags (naming a module's file is prose)
    return out


@lru_cache(maxsize=None)
def all_uses() -> tuple[Use, ...]:
    return tuple(u for doc in DOCS for u in doc_uses(parse(doc)))


def run_help(cli: Cli, scratch: Path) -> tuple[int, str]:
    cmd = [PYTHON, "-m", cli.name, "--help"] if cli.kind == "module" else [PYTHON, cli.name, "--help"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "RUN_DIR": str(scratch / "run"), "SMART_DATA": str(scratch / "data"), "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, f"no answer within {HELP_TIMEOUT_S} s"
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict[Cli, tuple[int, str]]:
    clis = sorted({u.cli for u in all_uses() if u.cli}, key=str)
    scratch = tmp_path_factory.mktemp("docs_help")
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1) or 1) as pool:
        results = list(pool.map(lambda c: run_help(c, scratch), clis))
    return dict(zip(clis, results))


def test_docs_name_clis():
    """The parser finds the CLIs: a guard against a parsing change that would silently check nothing."""
    named = {str(u.cli) for u in all_uses() if u.cli}
    for expected in ("eval/run_eval.py", "multi_agent/passage_retrieval.py", "multi_agent/finetune.py",
                     "scripts/quickstart.py", "eval/score.py", "eval/check_contamination.py"):
        assert expected in named, f"no doc command found for {expected}; found {sorted(named)}"


def test_named_commands_exist_and_can_answer_help():
    problems = [f"{u.where}: `{u.named}`: {u.problem}" for u in all_uses() if u.problem]
    assert not problems, "commands in the docs that cannot run as written:\n" + "\n".join(problems)


def test_every_named_cli_answers_help(helps):
    problems = []
    for cli, (code, output) in helps.items():
        if code != 0:
            wheres = sorted({u.where for u in all_uses() if u.cli == cli})
            tail = output.strip()[-600:].replace("\n", "\n    ")
            problems.append(f"`{cli} --help` exited {code} (named at {', '.join(wheres[:5])}"
                            f"{', ...' if len(wheres) > 5 else ''}):\n    {tail}")
    assert not problems, "CLIs named in the docs that do not answer --help:\n" + "\n".join(problems)


def test_every_flag_exists(helps):
    problems = []
    for u in all_uses():
        if not u.cli or helps[u.cli][0] != 0:
            continue
        known = set(HELP_FLAG.findall(helps[u.cli][1]))
        missing = [f for f in u.flags if f not in known]
        if missing:
            via = "" if u.named.endswith(u.cli.name) else f" (forwarded to {u.cli})"
            problems.append(f"{u.where}: `{u.named}`{via} has no {', '.join(missing)}")
    assert not problems, "flags the docs pass that the CLI's --help does not list:\n" + "\n".join(problems)

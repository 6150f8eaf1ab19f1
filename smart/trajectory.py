"""The SMART trajectory format, defined once: special tokens, prompt template, rendering, tolerant parsing.

See README "Trajectory format". Canonical text (one long trajectory):

    <|Reconstructor|>:\nSearch(q1\n q2)</eor>\n\n
    <retrieval>[1] Title\ntext\n[2] Title\ntext[\nRequest: request]</retrieval>\n\n
    <|Locator|>:\n[Relevant]: [1] Title\n fact\n[Irrelevant]: [2] Lacking Supporting Facts</eol>\n\n
    <|Generator|>:\nanswer\n[Cite]: [1]</eog>

The optional `Request:` line (data made with `combine_data.py --restate_request`; off by default) restates an
open question at the end of the retrieval block, the system's insertion: the Fact Locator and the Response Generator
then read the question a few tokens back, not a few hundred (before the passages). It is masked in training like the
passages; a model trained on it records `restated_request` and gets it at inference.

Parsing never raises on model output: it returns what it could read plus a list of problems.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

EOI, EOR, EOL, EOG = "</eoi>", "</eor>", "</eol>", "</eog>"
RETRIEVAL_OPEN, RETRIEVAL_CLOSE = "<retrieval>", "</retrieval>"
RELEVANT, IRRELEVANT, CITE = "[Relevant]", "[Irrelevant]", "[Cite]"
SPECIAL_TOKENS = [EOI, EOR, RETRIEVAL_OPEN, RETRIEVAL_CLOSE, EOL, RELEVANT, IRRELEVANT, CITE, EOG]

RECONSTRUCTOR, LOCATOR, GENERATOR = "<|Reconstructor|>:\n", "<|Locator|>:\n", "<|Generator|>:\n"
NO_FACTS = "Lacking Supporting Facts"
REQUEST_HEAD = "\nRequest: "  # the restated request's line at the end of a retrieval block
STOP_STRINGS = {"intent": EOR, "locator": EOL, "generator": EOG}

# Record types of a trajectory file (the `type` field).
LONG = "long"
INTENT, LOCATOR_TYPE, GENERATOR_TYPE, GENERATOR_NO_FACTS = "intent", "locator", "generator", "generator_no_facts"
SHORT_TYPES = (INTENT, LOCATOR_TYPE, GENERATOR_TYPE, GENERATOR_NO_FACTS)
# A generator step after the whole chain, its earlier steps in the prompt (see `generator_after_chain`).
GENERATOR_AFTER_CHAIN = "generator_after_chain"
STEP_TYPES = SHORT_TYPES + (GENERATOR_AFTER_CHAIN,)


@dataclass
class Passage:
    title: str
    text: str

    @classmethod
    def from_ctx(cls, ctx: dict) -> "Passage":
        """A retrieved `{title, text}` dict with whitespace collapsed, so the passage renders on two lines."""
        return cls(title=normalize_space(ctx.get("title") or ""), text=normalize_space(ctx.get("text") or ""))


@dataclass
class Fact:
    """The locator's verdict on passage `index` (1-based); `text` is the verbatim span when relevant."""

    index: int
    relevant: bool
    title: str = ""
    text: str = ""


@dataclass(frozen=True)
class Agents:
    """Which agents take part (the paper's agent ablations, Table 3); the Response Generator always answers."""

    intent: bool = True
    retrieval: bool = True  # Knowledge Retriever; without it there is nothing to locate either
    locator: bool = True


FULL = Agents()
ABLATIONS = {"full": FULL, "no_intent": Agents(intent=False), "no_locator": Agents(locator=False),
             "generator_only": Agents(intent=False, retrieval=False, locator=False)}


@dataclass
class Trajectory:
    queries: list[str] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    answer: str = ""
    citations: list[int] = field(default_factory=list)
    request: str = ""  # restated at the end of the retrieval block ("" = not restated; see the module docstring)

    @property
    def relevant(self) -> list[Fact]:
        return [f for f in self.facts if f.relevant]


# ----------------------------------------------------------------------------------------------- prompt
def request_text(instruction: str, input: str = "") -> str:
    """The user request with its end marker: `</eoi>\\n\\n` follows the last non-empty of the two parts.

    Fields that already carry `</eoi>` (files built the authors' way, with context after the marker)
    are kept as they are.
    """
    instruction, input = instruction or "", input or ""
    if EOI in instruction or EOI in input:
        return instruction, input
    if input.strip():
        return instruction, input + EOI + "\n\n"
    return instruction + EOI + "\n\n", input


def format_prompt(instruction: str, input: str = "") -> str:
    """The one prompt template used by training and inference alike."""
    instruction, input = request_text(instruction, input)
    if input.strip():
        return f"<|Instruction|>:\n{instruction}\n\n<|Input|>:\n{input}"
    return f"<|Instruction|>:\n{instruction}"


def chat_prompt(tokenizer, prompt: str) -> str:
    """`prompt` as the user turn of the tokenizer's chat template with the assistant turn opened: the trajectory then
    continues in the model's own turn (training and inference with `--chat_prompt`, recorded as `chat_prompt` in the
    trained model's config.json or adapter record)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)


# ----------------------------------------------------------------------------------------------- render
def render_intent(queries: list[str]) -> str:
    return "Search(" + "\n ".join(q.strip() for q in queries) + ")" + EOR


def render_passages(passages: list[Passage]) -> str:
    """`[1] Title\ntext\n[2] ...`: the numbered passages, as inside a retrieval block."""
    return "\n".join(f"[{i}] {p.title}\n{p.text}" for i, p in enumerate(passages, start=1))


def restated_request(instruction: str, input: str = "") -> str:
    """What the retrieval block restates of a request: an open question, i.e. a request without an input, its
    whitespace collapsed (anything from `</eoi>` on left out); "" for a request with an input (a claim, a question
    with its choices), which restated measured 9-12 points worse on multiple choice (docs/experiments.md)."""
    return "" if input.split(EOI)[0].strip() else normalize_space(instruction.split(EOI)[0])


def render_retrieval(passages: list[Passage], request: str = "") -> str:
    """The retrieval block: the numbered passages, then the restated `request` when given."""
    return RETRIEVAL_OPEN + render_passages(passages) + (REQUEST_HEAD + request if request else "") + RETRIEVAL_CLOSE


def render_locator(facts: list[Fact]) -> str:
    lines = []
    for f in facts:
        if f.relevant:
            lines.append(f"{RELEVANT}: [{f.index}] {f.title}\n {f.text.strip()}")
        else:
            lines.append(f"{IRRELEVANT}: [{f.index}] {NO_FACTS}")
    return "\n".join(lines) + EOL


def render_answer(answer: str, citations: list[int]) -> str:
    cite = ("\n" + CITE + ": " + " ".join(f"[{i}]" for i in citations)) if citations else ""
    return answer.strip() + cite + EOG


def render_verdict(claim_span: str, fact_span: str, label: str) -> str:
    """A claim's answer when a fact was located: what the claim says, what the fact says, then the verdict
    ("Claim: samurai | Fact: mathematician | Verdict: false"; read back by `parse_verdict`). Both spans are copied
    (from the claim, from the fact), so the verdict compares two spans next to it instead of searching the claim
    against the fact (see bench/bench_verdict.py); the fixed words commit the answer to a verdict from its first
    token, where a bare span first let the generator stop after it as if answering a question."""
    return f"Claim: {claim_span} | Fact: {fact_span} | Verdict: {label}"


def render_long(t: Trajectory, agents: Agents = FULL) -> str:
    """The full chain as the model writes it (the retrieval block being the system's insertion).

    With an ablation (`agents`), the skipped steps are left out: without the Intent Reconstructor the chain opens
    with the retrieval block (the request was the query); without the Fact Locator the generator follows the
    retrieval block and cites the passages directly; generator only is the answer alone, without citations.
    """
    out = RECONSTRUCTOR + render_intent(t.queries) + "\n\n" if agents.intent else ""
    if t.passages and agents.retrieval:
        out += render_retrieval(t.passages, t.request) + "\n\n"
        if agents.locator:
            out += LOCATOR + render_locator(t.facts) + "\n\n"
    return out + GENERATOR + render_answer(t.answer, t.citations if agents.retrieval else [])


def ablate_record(record: dict, ablation: str) -> dict:
    """A long-trajectory record re-rendered without the steps `ablation` skips (the paper's training ablations).

    The record keeps its prompt and gains `ablation`, which `validate_record` reads.
    """
    t, _ = parse_long(record["output"])
    return {**record, "ablation": ablation, "output": render_long(t, ABLATIONS[ablation])}


def _step_record(kind: str, instruction: str, input: str, context: str, output: str) -> dict:
    """A one-step record (type, instruction, input, output): `context` (the earlier steps) is appended after
    `</eoi>\\n\\n` in the last non-empty request field, so that `format_prompt(instruction, input)` is the whole
    prompt and `output` the whole target."""
    instruction, input = request_text(instruction, input)
    if input.strip():
        return {"type": kind, "instruction": instruction, "input": input + context, "output": output}
    return {"type": kind, "instruction": instruction + context, "input": "", "output": output}


def short_trajectories(instruction: str, input: str, t: Trajectory) -> list[dict]:
    """Stage-1 records (type, instruction, input, output): one agent's step each, earlier steps in the prompt."""
    records = [_step_record(INTENT, instruction, input, RECONSTRUCTOR, render_intent(t.queries))]
    if t.passages:
        context = render_retrieval(t.passages, t.request) + "\n\n" + LOCATOR
        records.append(_step_record(LOCATOR_TYPE, instruction, input, context, render_locator(t.facts)))
    if t.relevant:
        context = LOCATOR + render_locator(t.facts) + "\n\n" + GENERATOR
        records.append(_step_record(GENERATOR_TYPE, instruction, input, context, render_answer(t.answer, t.citations)))
    else:
        records.append(_step_record(GENERATOR_NO_FACTS, instruction, input, GENERATOR, render_answer(t.answer, [])))
    return records


def generator_after_chain(instruction: str, input: str, t: Trajectory) -> dict:
    """The long trajectory of `t` with everything before the answer in the (masked) prompt: only the Response
    Generator's step is learned, after the queries, the passages and the facts as given."""
    long = render_long(t)
    cut = long.index(GENERATOR) + len(GENERATOR)
    return _step_record(GENERATOR_AFTER_CHAIN, instruction, input, long[:cut], long[cut:])


# ----------------------------------------------------------------------------------------------- parse
_HEADER = r"<\|{name}\|>:?[ \t]*\n?"
_PASSAGE_HEAD = re.compile(r"(?:^|\n)\[(\d+)\][ \t]*([^\n]*)\n")
_FACT_HEAD = re.compile(r"\[(Relevant|Irrelevant)\][ \t]*:?[ \t]*\[(\d+)\][ \t]*([^\n]*)")
_CITATION = re.compile(r"\[(\d+)\]")


def _cut(text: str, end: str) -> tuple[str, bool]:
    """Text up to `end` (exclusive) and whether `end` was found."""
    i = text.find(end)
    return (text, False) if i < 0 else (text[:i], True)


def parse_intent(text: str) -> tuple[list[str], list[str]]:
    """Queries from `Search(q1\\n q2)</eor>` (header optional). Problems list what was off."""
    problems: list[str] = []
    text = re.sub(_HEADER.format(name="Reconstructor"), "", text, count=1)
    body, closed = _cut(text, EOR)
    if not closed:
        problems.append(f"intent: missing {EOR}")
    m = re.search(r"Search\((.*)\)", body, flags=re.S)
    if m:
        inner = m.group(1)
    else:
        m = re.search(r"Search\((.*)", body, flags=re.S)
        if not m:
            problems.append("intent: no Search(...)")
            return [], problems
        inner = m.group(1)
        problems.append("intent: unclosed Search(")
    queries = [q.strip() for q in inner.split("\n") if q.strip()]
    if not queries:
        problems.append("intent: empty Search()")
    return queries, problems


def split_retrieval(text: str) -> tuple[str, str]:
    """The inside of a retrieval block cut into (its passages, its restated request or "")."""
    passages, _, request = text.partition(REQUEST_HEAD)
    return passages, request.strip()


def parse_retrieval(text: str) -> list[Passage]:
    """Passages from the inside of a retrieval block (`[i] Title\\ntext` entries; a restated request is no passage)."""
    text = split_retrieval(text)[0]
    heads = list(_PASSAGE_HEAD.finditer(text))
    passages = []
    for h, nxt in zip(heads, heads[1:] + [None]):
        end = nxt.start() if nxt else len(text)
        passages.append(Passage(title=h.group(2).strip(), text=text[h.end():end].strip()))
    return passages


def parse_locator(text: str, n_passages: int | None = None) -> tuple[list[Fact], list[str]]:
    """Facts from locator lines (header optional), up to `</eol>`."""
    problems: list[str] = []
    text = re.sub(_HEADER.format(name="Locator"), "", text, count=1)
    body, closed = _cut(text, EOL)
    if not closed:
        problems.append(f"locator: missing {EOL}")
    heads = list(_FACT_HEAD.finditer(body))
    if not heads and body.strip():
        problems.append("locator: no [Relevant]/[Irrelevant] line")
    facts: list[Fact] = []
    seen: set[int] = set()
    for h, nxt in zip(heads, heads[1:] + [None]):
        index, relevant = int(h.group(2)), h.group(1) == "Relevant"
        span = body[h.end():nxt.start() if nxt else len(body)].strip()
        if n_passages is not None and not 1 <= index <= n_passages:
            problems.append(f"locator: passage [{index}] out of range 1..{n_passages}")
            continue
        if index in seen:
            problems.append(f"locator: passage [{index}] judged twice")
            continue
        seen.add(index)
        if relevant and not span:
            problems.append(f"locator: [Relevant] [{index}] without a fact")
            relevant = False
        title = h.group(3).strip()
        facts.append(Fact(index, relevant, title if relevant else "", span if relevant else ""))
    return facts, problems


_CLAIM_VS_FACT = re.compile(r"Claim:\s*(?P<claim>[^|\n]*?)\s*\|\s*Fact:\s*(?P<fact>[^|\n]*?)\s*(?:\||\n|$)")


def parse_verdict(text: str) -> tuple[str, str] | None:
    """(claim span, fact span) of an answer written as `render_verdict` writes it; None for any other answer."""
    m = _CLAIM_VS_FACT.search(text)
    return (m["claim"], m["fact"]) if m else None


def parse_answer(text: str) -> tuple[str, list[int], list[str]]:
    """Answer and citations from generator output (header optional), up to `</eog>`."""
    problems: list[str] = []
    text = re.sub(_HEADER.format(name="Generator"), "", text, count=1)
    body, closed = _cut(text, EOG)
    if not closed:
        problems.append(f"generator: missing {EOG}")
    citations: list[int] = []
    i = body.rfind(CITE)
    if i >= 0:
        citations = [int(c) for c in _CITATION.findall(body[i + len(CITE):])]
        body = body[:i]
    answer = body.strip()
    if not answer:
        problems.append("generator: empty answer")
    return answer, citations, problems


def _section(text: str, name: str) -> re.Match | None:
    return re.search(_HEADER.format(name=name), text)


def parse_long(text: str) -> tuple[Trajectory, list[str]]:
    """Read a (possibly broken) long trajectory; the header of each agent locates its part."""
    t, problems = Trajectory(), []
    rec, loc, gen = (_section(text, n) for n in ("Reconstructor", "Locator", "Generator"))
    if rec is None:
        problems.append("missing <|Reconstructor|>")
    else:
        t.queries, p = parse_intent(text[rec.start():])
        problems += p
    open_tag = RETRIEVAL_OPEN if RETRIEVAL_OPEN in text else "<|retrieval|>"
    r0 = text.find(open_tag)
    if r0 >= 0:
        r1 = text.find(RETRIEVAL_CLOSE, r0)
        if r1 < 0:
            problems.append(f"missing {RETRIEVAL_CLOSE}")
            r1 = loc.start() if loc else (gen.start() if gen else len(text))
        block = text[r0 + len(open_tag):r1].strip("\n")
        t.passages, t.request = parse_retrieval(block), split_retrieval(block)[1]
    if loc is not None:
        t.facts, p = parse_locator(text[loc.start():gen.start() if gen else len(text)], len(t.passages) or None)
        problems += p
    elif t.passages:
        problems.append("missing <|Locator|>")
    if gen is None:
        problems.append("missing <|Generator|>")
    else:
        t.answer, t.citations, p = parse_answer(text[gen.start():])
        problems += p
    return t, problems


# ----------------------------------------------------------------------------------------------- validate
def normalize_space(s: str) -> str:
    return " ".join(s.split())


def problem_kind(problem: str) -> str:
    """A problem message with its numbers replaced by N, for counting problems by kind."""
    return re.sub(r"\d+", "N", problem)


def _header_problems(text: str) -> list[str]:
    return [f"header <|{name}|> without colon" for name in ("Reconstructor", "Locator", "Generator")
            if re.search(rf"<\|{name}\|>(?!:)", text)]


def _fact_problems(facts: list[Fact], passages: list[Passage]) -> list[str]:
    """Every passage judged once, and every relevant fact a verbatim span of its passage."""
    problems = []
    if passages and len(facts) != len(passages):
        problems.append(f"locator judged {len(facts)} of {len(passages)} passages")
    for f in facts:
        if f.relevant and 1 <= f.index <= len(passages):
            if normalize_space(f.text) not in normalize_space(passages[f.index - 1].text):
                problems.append(f"fact [{f.index}] is not a verbatim span of its passage")
    return problems


def _citation_problems(citations: list[int], facts: list[Fact] | None, n_passages: int, answer_text: str
                       ) -> list[str]:
    """Citations in range and, unless `facts` is None (no locator step), pointing at relevant passages."""
    problems = []
    relevant = {f.index for f in facts or [] if f.relevant}
    for c in citations:
        if not 1 <= c <= n_passages:
            problems.append(f"citation [{c}] out of range 1..{n_passages}")
        elif facts is not None and c not in relevant:
            problems.append(f"citation [{c}] is not a relevant passage")
    if CITE in answer_text and not citations:
        problems.append(f"empty {CITE} list")
    return problems


def _tag_problems(text: str, once: tuple[str, ...]) -> list[str]:
    problems = [f"{tag} appears {text.count(tag)} times" for tag in once if text.count(tag) != 1]
    if text.count(RETRIEVAL_OPEN) + text.count("<|retrieval|>") != text.count(RETRIEVAL_CLOSE):
        problems.append(f"unbalanced {RETRIEVAL_OPEN}/{RETRIEVAL_CLOSE}")
    return problems


def validate_long(text: str, agents: Agents = FULL) -> list[str]:
    """Problems of a long trajectory: format, balanced tags, citations in range and relevant, facts verbatim.

    With an ablation (`agents`, see `render_long`), the skipped steps must be absent rather than present.
    """
    t, problems = parse_long(text)
    expected_missing = {"missing <|Reconstructor|>"} if not agents.intent else set()
    expected_missing |= {"missing <|Locator|>"} if not agents.locator else set()
    problems = [p for p in problems if p not in expected_missing]
    skipped = [name for name, runs, found in (
        ("<|Reconstructor|>", agents.intent, _section(text, "Reconstructor")),
        (RETRIEVAL_OPEN, agents.retrieval, t.passages), ("<|Locator|>", agents.locator, _section(text, "Locator")))
        if found and not runs]
    problems += [f"{name} present, but the ablation skips that step" for name in skipped]
    problems += _header_problems(text)
    once = (EOR,) * agents.intent + (EOL,) * bool(agents.locator and t.passages) + (EOG,)
    problems += _tag_problems(text, once)
    if not text.rstrip().endswith(EOG):
        problems.append(f"does not end with {EOG}")
    if agents.locator:
        problems += _fact_problems(t.facts, t.passages)
    gen = _section(text, "Generator")
    facts = t.facts if agents.locator else None
    problems += _citation_problems(t.citations, facts, len(t.passages), text[gen.end():] if gen else "")
    return problems


# Record types as the authors' release spells them (`type` of their short examples).
TYPE_ALIASES = {"intent_reconstructor": INTENT, "fac_locator": LOCATOR_TYPE}


def split_prompt(instruction: str, input: str = "") -> tuple[str, str]:
    """The prompt of a record cut after `</eoi>`: (request, context of earlier steps). No marker: (prompt, "")."""
    prompt = format_prompt(instruction, input)
    i = prompt.find(EOI)
    if i < 0:
        return prompt, ""
    return prompt[:i + len(EOI)], prompt[i + len(EOI):].lstrip("\n")


def record_type(record: dict) -> str:
    """The record's type in our names (`long` or a SHORT_TYPES entry), reading the authors' aliases too."""
    kind = str(record.get("type") or LONG).strip(" ,")
    if kind == "response_generator":
        _, context = split_prompt(record.get("instruction") or "", record.get("input") or "")
        return GENERATOR_TYPE if _section(context, "Locator") else GENERATOR_NO_FACTS
    return TYPE_ALIASES.get(kind, kind)


def validate_short(record: dict) -> list[str]:
    """Problems of a one-step record (stage 1's, or `generator_after_chain`): the prompt holds the right earlier steps,
    the target is one well-formed step."""
    kind = record_type(record)
    if kind not in STEP_TYPES:
        return [f"unknown short type {record.get('type')!r}"]
    prompt = format_prompt(record.get("instruction") or "", record.get("input") or "")
    output = record.get("output") or ""
    problems = [] if prompt.count(EOI) == 1 else [f"prompt: {EOI} appears {prompt.count(EOI)} times"]
    problems += _header_problems(prompt)
    _, context = split_prompt(record.get("instruction") or "", record.get("input") or "")
    last_header = {INTENT: "Reconstructor", LOCATOR_TYPE: "Locator"}.get(kind, "Generator")
    if not re.search(_HEADER.format(name=last_header) + r"$", context):
        problems.append(f"prompt: does not end with the <|{last_header}|> header")
    end = {INTENT: EOR, LOCATOR_TYPE: EOL}.get(kind, EOG)
    if not output.rstrip().endswith(end):
        problems.append(f"output: does not end with {end}")
    for tag in (EOI, EOR, EOL, EOG, RETRIEVAL_OPEN, RETRIEVAL_CLOSE):
        if output.count(tag) > (tag == end):
            problems.append(f"output: stray {tag}")
    r0 = max(context.find(RETRIEVAL_OPEN), context.find("<|retrieval|>"))
    r1 = context.find(RETRIEVAL_CLOSE)
    passages = parse_retrieval(context[context.find(">", r0) + 1:r1].strip("\n")) if 0 <= r0 < r1 else []
    if kind == INTENT:
        problems += parse_intent(output)[1]
    elif kind == LOCATOR_TYPE:
        if not passages:
            problems.append("prompt: no passages before the locator")
        facts, p = parse_locator(output, len(passages) or None)
        problems += p + _fact_problems(facts, passages)
    else:
        loc = _section(context, "Locator")
        facts = parse_locator(context[loc.start():])[0] if loc else []
        _, citations, p = parse_answer(output)
        problems += p
        n = max([f.index for f in facts], default=0)
        problems += _citation_problems(citations, facts, n, output)
        if kind == GENERATOR_AFTER_CHAIN:
            problems += _fact_problems(facts, passages) if passages else ["prompt: no passages before the locator"]
    return problems


def validate_record(record: dict) -> list[str]:
    """Problems of one trajectory-file record: its fields, then its long or short trajectory."""
    problems = [f"record: missing field '{f}'" for f in ("id", "instruction", "output") if record.get(f) in (None, "")]
    problems += [f"record: field '{f}' is not a string" for f in ("instruction", "input", "output")
                 if record.get(f) is not None and not isinstance(record[f], str)]
    if problems:
        return problems
    if record_type(record) == LONG:
        ablation = record.get("ablation") or "full"
        if ablation not in ABLATIONS:
            return [f"record: unknown ablation {ablation!r} (one of {', '.join(ABLATIONS)})"]
        problems = validate_long(record["output"], ABLATIONS[ablation])
        if format_prompt(record["instruction"], record.get("input") or "").count(EOI) != 1:
            problems.append(f"prompt: {EOI} appears more than once")
        return problems
    return validate_short(record)

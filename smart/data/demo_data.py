"""Offline demo data from the embedded corpus: facts read off the passages, turned into questions shaped like the
paper's tasks, run through the data-creation steps (the answer-guided teacher's intent, the real retriever, its locator,
combine), plus dev sets in the paper's evaluation file shapes.

Facts (`Relation`) are read from passage sentences with patterns: a person's occupation and nationality ("X was a
German physicist"), what a thing is ("X is a sport in which..."), where a place is, capitals, years ("founded in
1911") and creators ("directed by N"); and from any sentence of any passage (SPAN_FACTS_PER_ROUND of them per 13
relation facts), span facts: a name, year or count the sentence states, asked for in the sentence's own words
("Sofia is built west of which river?", also "Which river is Sofia built west of?"), so that questions reach past
an article's lead and the relation patterns. Every gold answer is a span of the sentence it came from (the
evidence), which lies whole inside one passage. From one fact come:
- open: a PopQA-like question whose answer is the span ("What is X's occupation?");
- claim: a PubHealth-like statement that restates the fact (true) or changes exactly its value (false), phrased by
  a template or (training only, half the time) as the evidence sentence's own clause with the value swapped;
  training claims come in true/false pairs on the same fact and phrasing;
- choice: an ARC-like four-choice question, the distractors being values of the same relation elsewhere, answered
  with the choice's text and then its label ("Kenya (D)", `choice_answer`);
- compare (training only): two facts, two queries ("Were X and Y from the same country?").
About MISS_SHARE of the training items get passages that do not hold the evidence (retrieved for the query, with the
evidence's passages removed): the Fact Locator marks them all irrelevant and the generator answers without facts.
Train and dev use disjoint articles and disjoint question phrasings (dev templates are never trained on), so the
dev score says whether the model learned the skill rather than the wording.
"""
from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from smart import defaults
from smart.data.combine import combine, trajectory_stats
from smart.data.convert import (FACT_VERIFICATION, FACT_VERIFICATION_INSTRUCTION, MULTI_HOP_QA, MULTIPLE_CHOICE,
                           MULTIPLE_CHOICE_INSTRUCTION, OPEN_QA, choice_answer)
from smart.data.intent import run_intent
from smart.data.locator import run_locate, sentences
from smart.evaluation.tasks import format_choices
from smart.io import InputError, iter_jsonl, write_json, write_jsonl
from smart.trajectory import normalize_space, render_verdict

log = logging.getLogger(__name__)

MISS_SHARE = 0.2
SPAN_FACTS_PER_ROUND = 6  # about one fact in three; measured against relations alone in the README
DEV_TASKS = ("popqa", "pubhealth", "arc_c")
LABELS = "ABCD"

DEMONYMS = {
    "American": "United States", "British": "United Kingdom", "English": "England", "Scottish": "Scotland",
    "Irish": "Ireland", "Welsh": "Wales", "French": "France", "German": "Germany", "Italian": "Italy",
    "Spanish": "Spain", "Portuguese": "Portugal", "Dutch": "Netherlands", "Belgian": "Belgium", "Swiss": "Switzerland",
    "Austrian": "Austria", "Swedish": "Sweden", "Norwegian": "Norway", "Danish": "Denmark", "Finnish": "Finland",
    "Polish": "Poland", "Czech": "Czech Republic", "Hungarian": "Hungary", "Romanian": "Romania", "Greek": "Greece",
    "Russian": "Russia", "Ukrainian": "Ukraine", "Serbian": "Serbia", "Croatian": "Croatia", "Bulgarian": "Bulgaria",
    "Turkish": "Turkey", "Persian": "Persia", "Iranian": "Iran", "Iraqi": "Iraq", "Egyptian": "Egypt",
    "Israeli": "Israel", "Arab": "Arabia", "Indian": "India", "Pakistani": "Pakistan", "Chinese": "China",
    "Japanese": "Japan", "Korean": "Korea", "South Korean": "South Korea", "Vietnamese": "Vietnam", "Thai": "Thailand",
    "Indonesian": "Indonesia", "Filipino": "Philippines", "Australian": "Australia", "Canadian": "Canada",
    "Mexican": "Mexico", "Brazilian": "Brazil", "Argentine": "Argentina", "Chilean": "Chile", "Colombian": "Colombia",
    "Peruvian": "Peru", "Cuban": "Cuba", "Nigerian": "Nigeria", "Kenyan": "Kenya", "South African": "South Africa",
    "Ethiopian": "Ethiopia", "Roman": "Rome", "Soviet": "Soviet Union", "Prussian": "Prussia", "Flemish": "Flanders",
    "Jamaican": "Jamaica", "Icelandic": "Iceland", "Estonian": "Estonia", "Lithuanian": "Lithuania",
    "Latvian": "Latvia", "Slovak": "Slovakia", "Slovene": "Slovenia", "Slovenian": "Slovenia", "Afghan": "Afghanistan",
    "Bangladeshi": "Bangladesh", "Sri Lankan": "Sri Lanka", "Nepalese": "Nepal", "Mongolian": "Mongolia",
    "Moroccan": "Morocco", "Algerian": "Algeria", "Tunisian": "Tunisia", "Ghanaian": "Ghana", "Venezuelan": "Venezuela",
    "Uruguayan": "Uruguay", "New Zealand": "New Zealand", "Syrian": "Syria", "Lebanese": "Lebanon",
    "Saudi": "Saudi Arabia", "Armenian": "Armenia", "Georgian": "Georgia", "Azerbaijani": "Azerbaijan",
}
_NAME = r"[A-Z][\w'’-]+(?:\.?\s+(?:(?:van|von|de|da|del|di|la|le|of|the|dan|ibn|bin|al)\s+)?[A-Z][\w'’-]+){0,4}"
_CUT = re.compile(r"\s(?:of|for|in|that|which|who|whose|with|by|used|from|to|on|at|as|and|or|known|based|made|"
                  r"developed|founded|located|consisting|where|when|comprising|designed|is|was|written|created|during|"
                  r"into|between|under|over|after|before|through|within|among|against|around|near|since|until|while|"
                  r"than|such|including|containing|native|indigenous|named|called|having|designated|characterized|"
                  r"fought|worn|born|belonging|equal|ranging|spanning|dating|lying|living|forming|serving|occurring|"
                  r"\w{3,}ed(?=\s(?:in|on|at|by|to|from|for|as|with|of|into|under|primarily|mainly|largely|mostly|"
                  r"chiefly|only)\b))\b")  # "a mineral composed primarily of"
_DEFINITION = re.compile(r"^(?P<subject>[^,.;()]{2,80}?)(?:,[^.;]{0,120}?,)? (?P<verb>is|was|are|were) "
                         r"(?P<art>an?|the) (?P<what>[A-Za-z0-9][^.;:()]{3,150})")
_PERSON = re.compile(r"^(?P<nat>(?:[A-Z][a-z]+[ -]){0,1}[A-Z][a-z]+) (?P<jobs>[a-z][a-z -]+?(?:, (?:and )?[a-z][a-z -]+?)*)"
                     r"(?=$| who\b| and\b| known\b| best\b| widely\b| whose\b| from\b| of\b| in\b| during\b| for\b)")
_YEAR = re.compile(r"\b(?P<verb>founded|established|built|completed|released|published|discovered|formed|invented|"
                   r"signed|opened|launched|premiered|constructed|introduced|ratified|adopted) (?:in|on) "
                   r"(?:(?:\d{1,2} )?[A-Z][a-z]+ (?:\d{1,2}, )?)?(?P<value>1\d{3}|20\d{2})\b")
_CREATOR = re.compile(r"\b(?P<verb>written|directed|composed|painted|founded|designed|developed|invented|discovered|"
                      r"produced|created) by (?P<value>" + _NAME + ")")
_CAPITAL_OF = re.compile(r"^(?P<subject>[^,]{2,40}?)(?:,[^.]{0,60}?,)? is the capital(?: city)?(?: and (?:the )?"
                         r"(?:largest|most populous) city)? of (?:the )?(?P<value>" + _NAME + ")")
_CAPITAL = re.compile(r"\b[Ii]ts capital(?: city)?(?: and (?:the )?(?:largest|most populous) city)? is (?P<value>" + _NAME + ")")
_LOCATED = re.compile(r"^(?P<subject>[^,]{2,40}?)(?:,[^.]{0,60}?,)? is an? (?:[\w-]+ ){0,3}(?P<kind>city|town|country|"
                      r"river|lake|mountain|island|region|state|province|village|municipality|sea|desert|archipelago|"
                      r"peninsula|capital|nation|mountain range) (?:located )?(?:in|on) (?:the )?(?P<value>" + _NAME + ")")
ACTIVE = {"written": "wrote", "directed": "directed", "composed": "composed", "painted": "painted", "founded": "founded",
          "designed": "designed", "developed": "developed", "invented": "invented", "discovered": "discovered",
          "produced": "produced", "created": "created"}


@dataclass
class Relation:
    """One fact of an article: `answers` (the first is the canonical one) are spans of `evidence`, a sentence of
    passage `passage_id`; `kind` names the relation (occupation, nationality, category, located, capital,
    capital_of, year:<verb>, creator:<verb>)."""

    title: str
    topic: str
    kind: str
    answers: list[str]
    evidence: str
    passage_id: str
    verb: str = "is"
    extra: dict = field(default_factory=dict)


def _clean_name(name: str) -> str:
    return name.strip().rstrip(".,;")


_VAGUE = {"first", "second", "third", "last", "only", "name", "term", "word", "one", "part", "most", "largest",
          "type", "kind", "form", "group", "member", "set", "class", "branch", "family", "field", "series", "number",
          "state", "collection", "way", "study", "system", "body", "unit", "style", "line", "method", "process",
          "genus", "species", "capital", "range", "variety", "piece"}
_ADJECTIVE_END = re.compile(r"(?:ous|ical|ful|less|able|ible|\w{5,}ed)$")  # "philosophical", "straight-grained"
_TRAILING = {"of", "about", "the", "a", "an", "and", "or", "its", "their", "his", "her", "between", "than", "very", "i",
             "endemic", "originating", "active", "situated", "found"}  # words after the noun: "bear species endemic"
# "a country primarily located in": the head is "country"; nouns ending in -ly stay ("language family", "butterfly")
_ADVERB = re.compile(r"(?!(?:\w*fly|\w*family|assembly|monopoly|anomaly|homily|lily|jelly|ally|rally|belly|Italy)$)"
                     r"\w{3,}ly$")


def _head(phrase: str, max_words: int = 4) -> str:
    """A noun phrase cut before its first preposition or clause (kept through `of` after a vague head such as
    "form of theatre"), without trailing function words; "" when longer than `max_words` words on either side of
    that `of` (cutting it would leave "a private Ivy League research")."""
    parts = phrase.split(",")
    phrase = " " + (",".join(parts[:2]) if len(parts[0].split()) == 1 else parts[0])  # "a large, rounded body"
    m = _CUT.search(phrase)
    while m and m.group(0).strip() in ("and", "or") and len(phrase[:m.start()].split()) == 1:
        m = _CUT.search(phrase, m.end())  # "a philosophical and religious tradition": one head, two adjectives
    phrase = phrase[1:]
    head = phrase[:m.start() - 1] if m else phrase
    if m and m.group(0).strip() == "of" and head.split() and head.split()[-1] in _VAGUE:
        rest = phrase[m.end() - 1:].strip()
        n = _CUT.search(" " + rest)
        if len(head.split()) > max_words:
            return ""
        head = f"{head} of {rest[:n.start() - 1] if n else rest}"
        max_words = 2 * max_words + 1
    words = head.split()
    if len(words) > max_words:
        return ""
    while words and (words[-1].lower().strip(".") in _TRAILING or _ADVERB.match(words[-1])):
        words.pop()
    if not words or (len(words) == 1 and words[0] in _VAGUE) or words[-1] in ("name", "term", "word") \
            or _ADJECTIVE_END.search(words[-1]):
        return ""  # no noun to name the thing by
    return " ".join(words)


def relations_of_passage(title: str, topic: str, passage_id: str, text: str, first: bool) -> list[Relation]:
    """The facts the patterns find in one passage (definitions only in an article's first sentence)."""
    out = []
    for i, sentence in enumerate(sentences(normalize_space(text))):
        if len(sentence.split()) > 60:
            continue

        def add(kind: str, answers: list[str], verb: str = "is", **extra) -> None:
            answers = [a for a in dict.fromkeys(a.strip() for a in answers) if a]  # aliases after the first
            if kind in ("located", "capital", "capital_of") and answers and answers[0] in DEMONYMS:
                return  # "the capital of the Indonesian province of..."
            if answers and answers[0] in sentence and title.lower() not in answers[0].lower() and answers[0].lower() not in title.lower():
                out.append(Relation(title, topic, kind, answers, sentence, passage_id, verb, extra))

        if first and i == 0 and (m := _DEFINITION.search(sentence)):
            verb, what = m["verb"], m["what"]
            if (p := _PERSON.match(what)) and p["nat"] in DEMONYMS and topic in ("People", ""):
                jobs = [_head(j) for j in re.split(r",\s*(?:and\s+)?|\s+and\s+", p["jobs"])]
                add("occupation", [j for j in jobs if j], verb)
                add("nationality", [p["nat"], DEMONYMS[p["nat"]]], verb)
            elif m["art"] != "the" and not what[0].isupper() and (head := _head(what)):
                add("category", [head], verb, article=m["art"])
        for m in _YEAR.finditer(sentence):
            if sentence.startswith(("It ", "The ", title.split()[0])):
                add(f"year:{m['verb']}", [m["value"]], "was")
        for m in _CREATOR.finditer(sentence):
            name = _clean_name(m["value"])
            if name.split()[0] not in DEMONYMS and len(name.split()) >= 2 and (i == 0 or sentence.startswith("It ")):
                add(f"creator:{m['verb']}", [name], "was")
        if i == 0 and (m := _CAPITAL_OF.match(sentence)):
            add("capital_of", [_clean_name(m["value"])])
        if m := _CAPITAL.search(sentence):
            add("capital", [_clean_name(m["value"])])
        if i == 0 and (m := _LOCATED.match(sentence)):
            add("located", [_clean_name(m["value"])])
    return out


_MONTHS = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
_SPAN_YEAR = re.compile(r"\b(?:in|since|from|until|by|of) (?:(?:\d{1,2} )?[A-Z][a-z]+ )?(?P<value>1\d{3}|20\d{2})\b"
                        r"(?![–-]\d| [A-Z])")
_SPAN_COUNT = re.compile(r"\b(?P<value>(?:(?:about|approximately|around|over|more than|nearly|almost) )?\d[\d,]*(?:\.\d+)?"
                         r"(?: (?:million|billion|thousand))?) (?P<unit>[a-z]{3,}s)\b")
_SPAN_NAME = re.compile(r"(?<=[a-z,] )(?P<value>" + _NAME + r")")
_STOP = set("a an the of in on at by to for from with and or is was are were be been its his her their it this that "
            "which what who whom how many what year as into than also".split())
SPAN_KINDS = ("span:name", "span:year", "span:count")
# kinds a name may qualify ("the Vitosha mountain" -> "which mountain"); before other nouns a name is an adjective
# ("Western consumption", "India's third-longest-serving prime minister") and asks for nothing
_KIND_NOUNS = set("river mountain mountains lake island islands sea ocean bay strait valley desert city town region "
                  "province state county district country kingdom empire dynasty family genus order class species "
                  "language languages people peoples tribe virus bacterium disease party church university museum "
                  "prize award festival war battle treaty period era culture religion school movement".split())
_CLAUSE_END = re.compile(r"[,;:(]| (?:which|who|whose|where|while|and (?:is|was|has|had))\b")


def _subject(before: str, title: str) -> str:
    """The clause's start with its subject named: "It/He/She/They ..." and "The city is ..." become the title."""
    before = re.sub(r"\s*\([^)]*\)", "", before)
    before = re.sub(r"^(?:It|This|He|She|They) ", title + " ", before)
    if title.lower() not in before.lower():
        before = re.sub(r"^The [a-z]+ (?=(?:is|was|are|were|has|had|lies)\b)", title + " ", before)
    return before


_BY_WHOM = re.compile(r"\b(?:written|directed|composed|painted|produced|founded|designed|invented|discovered|created|"
                      r"led|ruled|built|developed|established|published|named|killed|defeated|married|played) by $")


def span_question(title: str, sentence: str, start: int, end: int, kind: str) -> str | None:
    """A question asking for `sentence[start:end]` in the sentence's own words: the span replaced by its question
    word ("in what year", "how many", "which <noun>", "by whom", "what"), the clause cut where the fact ends and its
    subject named ("Sofia is built west of which river?"). None when the clause is not about the article (its title
    absent), when the span is part of a longer name or an adjective ("a Classical composer"), or when the question
    reads too short or too long."""
    before, rest = sentence[:start], sentence[end:]
    if re.match(r"(?:Its|His|Her|Their) ", before) or re.search(r"(?:\ban? |[A-Z]\w* (?:of )?(?:the )?)$", before) \
            or re.match(r" (?:of|de|and)(?: the)? [A-Z]", rest) \
            or re.search(r"(?:,|\band|\bor|\d (?:to|and)) $", before) or re.match(r"(?:,| and| or) [A-Z]", rest):
        return None  # one of a list ("Iraq, Israel, what?") asks for no one thing
    if cut := _CLAUSE_END.search(rest):
        rest = rest[:cut.start()]
    rest = rest.rstrip(" .")
    noun = re.match(r" ([a-z]{3,})", rest)
    if kind == "span:year":
        wh = "what year"
    elif kind == "span:count":
        wh = "how many"
    elif noun and noun.group(1) not in _STOP:
        if noun.group(1) not in _KIND_NOUNS:
            return None
        before, wh = re.sub(r"\bthe $", "", before), "which"  # "the Vitosha mountain" -> "which mountain"
    elif m := re.search(r"\bthe ([a-z]{3,}) $", before):
        before, wh = before[:m.start()], f"which {m.group(1)}"  # "the genus Orthopoxvirus" -> "which genus"
    else:
        before, wh = re.sub(r"\bthe $", "", before), "whom" if _BY_WHOM.search(before) else "what"
    question = normalize_space(_subject(before, display_title(title)) + wh + rest)
    if display_title(title).lower() not in question.lower() or not 5 <= len(question.split()) <= 22:
        return None
    return question[0].upper() + question[1:] + "?"


def fronted_question(question: str, title: str) -> str | None:
    """A span question with its question word first, as people ask: "Sofia is built west of which river?" ->
    "Which river is Sofia built west of?", "Thriller was produced by whom?" -> "Who produced Thriller?", "X was
    founded in what year?" -> "When was X founded?". None unless the question reads "<title> is/was ... <question
    word>" with the question word last."""
    m = re.match(r"(?P<subject>(?:The )?" + re.escape(display_title(title)) + r") (?P<aux>is|was|are|were) "
                 r"(?P<pred>.+?) ?(?P<wh>in what year|which [a-z]+|whom|what)\?$", question)
    if not m or re.search(r",| and ", m["pred"]) or len(m["pred"].split()) > 10 or m["pred"].endswith(" the"):
        return None
    subject, aux, pred, wh = re.sub(r"^The ", "the ", m["subject"]), m["aux"], m["pred"], m["wh"]
    if wh == "whom":
        verb = re.fullmatch(r"(\w+) by", pred)
        return f"Who {ACTIVE.get(verb[1], verb[1])} {subject}?" if verb and _BY_WHOM.search(pred + " ") else None
    if wh == "in what year":
        return f"When {aux} {subject} {pred}?"
    return f"{wh[0].upper() + wh[1:]} {aux} {subject} {pred}?"


def span_facts(title: str, topic: str, passage_id: str, text: str) -> list[Relation]:
    """Facts of any sentence of a passage, not only the patterns' relations: a name, a year or a count the
    sentence states, asked for in the sentence's words (`extra["questions"][0]`, see `span_question`) and, where
    the clause allows, also with the question word first (`extra["questions"][1]`)."""
    out = []
    name = display_title(title).lower()
    for sentence in sentences(normalize_space(text)):
        if len(sentence.split()) > 45:
            continue
        found = [("span:year", m.start("value"), m.end("value")) for m in _SPAN_YEAR.finditer(sentence)]
        found += [("span:count", m.start("value"), m.end("value")) for m in _SPAN_COUNT.finditer(sentence)]
        for m in _SPAN_NAME.finditer(sentence):
            value = _clean_name(m["value"])
            if value.split()[0] not in _MONTHS and value not in DEMONYMS and len(value) > 2 \
                    and not re.search(r"(?:['’]s|ised|ized|ed)$", value):  # "Africa's", "Latinised"
                found.append(("span:name", m.start("value"), m.start("value") + len(value)))
        for kind, start, end in found:
            value = sentence[start:end]
            if value.lower() in name or name in value.lower():
                continue
            if question := span_question(title, sentence, start, end, kind):
                forms = [question] + ([fronted] if (fronted := fronted_question(question, title)) else [])
                out.append(Relation(title, topic, kind, [value], sentence, passage_id, extra={"questions": forms}))
    return out


def extract_relations(store, topics: dict[str, str] | None = None, spans: bool = False) -> list[Relation]:
    """Every fact of every passage of a PassageStore (rows in order; an article's first row holds its lead), with
    `spans` also its span facts."""
    topics = topics or {}
    out, seen_titles = [], set()
    for row in store:
        first = row["title"] not in seen_titles
        seen_titles.add(row["title"])
        topic = topics.get(row["title"], "")
        out += relations_of_passage(row["title"], topic, str(row["id"]), row["text"], first)
        if spans:
            out += span_facts(row["title"], topic, str(row["id"]), row["text"])
    return out


# ----------------------------------------------------------------------------------------------- phrasing
# Question templates per relation: TRAIN phrasings feed the training set, DEV phrasings only the dev sets.
TRAIN_QUESTIONS = {
    "occupation": ["What is {t}'s occupation?", "What did {t} do for a living?", "What was the profession of {t}?",
                   "{t} is best known as what?", "what was {t}'s job"],
    "nationality": ["What nationality is {t}?", "Which country is {t} from?", "{t} was a citizen of which country?",
                    "what country was {t} from"],
    "category": ["What is {t}?", "What kind of thing is {t}?", "{t} is an example of what?", "How would you define {t}?",
                 "what is {t} exactly"],
    "located": ["Where is {t}?", "Where is {t} located?", "In which region is {t}?", "where is {t} situated"],
    "capital_of": ["{t} is the capital of which country?", "Of which place is {t} the capital?",
                   "{t} is the capital of what?"],
    "capital": ["What is the capital of {t}?", "Which city is the capital of {t}?", "capital of {t}?"],
    "year": ["When was {t} {verb}?", "In what year was {t} {verb}?", "What year was {t} {verb}?",
             "when was {t} {verb}"],
    "creator": ["Who {active} {t}?", "{t} was {verb} by whom?", "Who {active} {t}, according to records?"],
}
DEV_QUESTIONS = {
    "occupation": ["What kind of work is {t} known for?", "What was {t}'s line of work?"],
    "nationality": ["Where did {t} come from?", "What is the nationality of {t}?"],
    "category": ["Can you tell me what {t} is?", "What type of thing is {t}?"],
    "located": ["Where can {t} be found?", "In what part of the world is {t}?"],
    "capital_of": ["Which country has {t} as its capital?"],
    "capital": ["What city serves as the capital of {t}?"],
    "year": ["In which year was {t} {verb}?"],
    "creator": ["Who was it that {active} {t}?"],
}
TRUE_STATEMENTS = {
    "occupation": ["{t} {verb} {a} {v}.", "{t} worked as {a} {v}.", "{t} is known as {a} {v}."],
    "nationality": ["{t} {verb} {v}.", "{t} {verb} of {v} nationality.", "{t} came from {country}."],
    "category": ["{t} {verb} {a} {v}.", "{t} can be described as {a} {v}.", "{t} is a kind of {v}."],
    "located": ["{t} is located in {v}.", "{t} lies in {v}.", "{t} can be found in {v}."],
    "capital_of": ["{t} is the capital of {v}.", "{v} has {t} as its capital."],
    "capital": ["The capital of {t} is {v}.", "{v} is the capital of {t}."],
    "year": ["{t} was {verb} in {v}.", "{t} was first {verb} in {v}."],
    "creator": ["{t} was {verb} by {v}.", "{v} {active} {t}."],
}
CHOICE_STEMS = {
    "occupation": ["Which of these was the occupation of {t}?", "{t} worked as which of the following?"],
    "nationality": ["{t} was of which nationality?", "{t} came from which country?"],
    "category": ["Which of the following best describes {t}?", "{t} is which of the following?"],
    "located": ["In which of these places is {t}?", "Where is {t} located?"],
    "capital_of": ["{t} is the capital of which of these?"],
    "capital": ["Which city is the capital of {t}?"],
    "year": ["What year was {t} {verb} in?"],
    "creator": ["Which of these people {active} {t}?"],
}
COMPARE_NATIONALITY = ["Were {t} and {u} from the same country?", "Did {t} and {u} share a nationality?",
                       "Are {t} and {u} of the same nationality?"]
QUERY_NOUN = {"occupation": "occupation", "nationality": "nationality", "category": "", "located": "location",
              "capital_of": "capital of", "capital": "capital", "year": "{verb}", "creator": "{verb} by"}


def _base(kind: str) -> str:
    return kind.split(":")[0]


def display_title(title: str) -> str:
    """The title as a person would write it: "Crane (bird)" -> "Crane"."""
    return re.sub(r"\s*\([^)]*\)$", "", title)


def _article(value: str, rel: Relation) -> str:
    if value == rel.answers[0] and rel.extra.get("article") == "the":
        return "the"
    return "an" if value[:1].lower() in "aeiou" else "a"


def _fields(rel: Relation, value: str | None = None) -> dict:
    verb = rel.kind.split(":")[1] if ":" in rel.kind else rel.verb
    value = rel.answers[0] if value is None else value
    return {"t": display_title(rel.title), "v": value, "verb": verb, "active": ACTIVE.get(verb, verb),
            "country": DEMONYMS.get(value, value), "a": _article(value, rel)}


def _fill(template: str, rel: Relation, value: str | None = None) -> str:
    text = template.format(**_fields(rel, value))
    return text[0].upper() + text[1:]


def query_of(rel: Relation) -> str:
    """The search query the Intent Reconstructor writes for this fact: the title and the relation's noun (for a
    span fact, the question's two content words nearest its question word: "Sofia mountain foot")."""
    title = display_title(rel.title)
    if _base(rel.kind) == "span":
        question = re.sub(r"[^\w\s'-]", " ", rel.extra["questions"][0])
        before, _, after = re.split(r"\b(what year|how many|which|whom|what)\b", question, maxsplit=1)
        near = after.split() + before.split()[::-1]
        words = [w for w in near if w.lower() not in _STOP and w.lower() not in title.lower()][:2]
        return normalize_space(" ".join([title, *words]))
    noun = QUERY_NOUN[_base(rel.kind)].format(**_fields(rel))
    return normalize_space(f"{title} {noun}")



def sentence_claim(rel: Relation, value: str) -> str | None:
    """The evidence sentence's clause that states the fact, `value` in place of the answer: the sentence restated
    (true) or with exactly one fact changed (false). None when the clause is too long to read as a claim."""
    answer = rel.answers[0]
    start = rel.evidence.find(answer)
    rest = rel.evidence[start + len(answer):]
    if rel.kind == "category":  # what follows a category's head qualifies the true one only ("a room used for...")
        rest = ""
    elif end := _CLAUSE_END.search(rest):
        rest = rest[:end.start()]
    if re.match(r"(?:Its|His|Her|Their) ", rel.evidence[:start]):
        return None  # "Its capital is Rabat": whose?
    before = _subject(rel.evidence[:start], display_title(rel.title))  # without pronunciations, dates
    if value != answer:  # the article before the swapped value
        before = re.sub(r"\ban? $", ("an " if value[:1].lower() in "aeiou" else "a "), before)
    claim = (before + value + rest).rstrip(" .") + "."
    return claim if len(claim.split()) <= 25 else None


def _shifted(value: str, rng: random.Random) -> str:
    """A year or count changed: a year by 3-40 years, a count scaled, in the value's own format."""
    m = re.search(r"\d[\d,]*(?:\.\d+)?", value)
    number = float(m.group(0).replace(",", ""))
    if re.fullmatch(r"1\d{3}|20\d{2}", m.group(0)):
        new = f"{int(number) + rng.choice([-1, 1]) * rng.randint(3, 40)}"
    else:
        scaled = number * rng.choice([0.25, 0.5, 2, 3, 4, 10])
        new = f"{scaled:,.1f}".rstrip("0").rstrip(".") if "." in m.group(0) else f"{round(scaled):,}"
        new = new if "," in m.group(0) else new.replace(",", "")
    return value[:m.start()] + new + value[m.end():]


def _distractors(rel: Relation, pool: list[Relation], rng: random.Random, n: int) -> list[str]:
    """n values of the same relation from other articles (same topic first), none a gold answer or in the evidence;
    for a year or count, the value shifted."""
    golds = {a.lower() for a in rel.answers}
    if rel.kind in ("span:year", "span:count"):
        values: list[str] = []
        for _ in range(10 * n):
            value = _shifted(rel.answers[0], rng)
            if value.lower() not in golds and value not in values and value.lower() not in rel.evidence.lower():
                values.append(value)
            if len(values) == n:
                break
        return values
    same = [r for r in pool if r.topic == rel.topic and r.title != rel.title]
    rest = [r for r in pool if r.topic != rel.topic]
    values: list[str] = []
    for other in rng.sample(same, len(same)) + rng.sample(rest, len(rest)):
        value = other.answers[0]
        if value.lower() not in golds and value.lower() not in rel.evidence.lower() and value not in values:
            values.append(value)
            if len(values) == n:
                break
    return values


# ----------------------------------------------------------------------------------------------- items
def phrasings(split: str, shape: str, base: str) -> list[str]:
    """The templates of a split ("train" or "dev") for a shape and relation; the dev ones are never trained on."""
    if shape == "open":
        return (TRAIN_QUESTIONS if split == "train" else DEV_QUESTIONS)[base]
    if shape == "claim":
        statements = TRUE_STATEMENTS[base]
        return statements[:-1] if split == "train" else statements[-1:]
    return CHOICE_STEMS[base] + TRAIN_QUESTIONS[base] if split == "train" else DEV_QUESTIONS[base]


def _base_item(rel: Relation, shape: str) -> dict:
    return {"task_type": OPEN_QA, "input": "", "queries": [query_of(rel)], "evidence": [rel.evidence],
            "evidence_passages": [rel.passage_id], "answers": [], "golds": rel.answers, "shape": shape}


def claim_value(claim: str, value: str) -> str:
    """The claim's own spelling of `value`: as given, as a country for a demonym ("came from France"), or
    capitalized at the start of the sentence."""
    for form in (value, DEMONYMS.get(value, value), value[:1].upper() + value[1:]):
        if form in claim:
            return form
    return value


def make_claims(rel: Relation, pool: list[Relation], rng: random.Random, split: str,
                truths: tuple[bool, ...]) -> list[dict]:
    """PubHealth-like items on one fact, one per entry of `truths`: the fact restated (True) or its value changed
    (False), all in one phrasing, so a true/false pair differs in the value alone; [] without a distractor value.
    `output` is the reasoned verdict (`trajectory.render_verdict`), `golds` the bare label (what a miss answers,
    and scores); `claim_value` and `fact_value` are the two spans the verdict compares."""
    others = _distractors(rel, pool, rng, 1)
    if not others:
        return []
    span = _base(rel.kind) == "span"  # no template: the sentence's clause is the claim
    template = None if span else rng.choice(phrasings(split, "claim", _base(rel.kind)))
    restate = span or (split == "train" and rng.random() < 0.5)
    items = []
    for true in truths:
        value = rel.answers[0] if true else others[0]
        claim = (restate and sentence_claim(rel, value)) or (template and _fill(template, rel, value))
        if not claim:
            return []
        label = "true" if true else "false"
        said = claim_value(claim, value)
        items.append({**_base_item(rel, "claim"), "task_type": FACT_VERIFICATION, "claim": claim, "input": claim,
                      "instruction": FACT_VERIFICATION_INSTRUCTION, "output": render_verdict(said, rel.answers[0], label),
                      "golds": [label], "claim_value": said, "fact_value": rel.answers[0]})
    return items


def make_item(shape: str, rel: Relation, pool: list[Relation], rng: random.Random, split: str) -> dict | None:
    """One unified item (instruction, input, output, task_type, queries, evidence, golds for scoring) of a shape:
    open, claim (true or false at random) or choice; None when the relation has too few values elsewhere for
    distractors."""
    item = _base_item(rel, shape)
    forms = rel.extra.get("questions")  # a span fact's own questions, else a template of the split
    question = rng.choice(forms) if forms else None
    if shape == "open":
        return {**item, "instruction": question or _fill(rng.choice(phrasings(split, shape, _base(rel.kind))), rel),
                "output": rel.answers[0]}
    if shape == "claim":
        claims = make_claims(rel, pool, rng, split, (rng.random() < 0.5,))
        return claims[0] if claims else None
    others = _distractors(rel, pool, rng, 3)
    if len(others) < 3:
        return None
    choices = others + [rel.answers[0]]
    rng.shuffle(choices)
    stem = question or _fill(rng.choice(phrasings(split, shape, _base(rel.kind))), rel)
    key = LABELS[choices.index(rel.answers[0])]
    return {**item, "task_type": MULTIPLE_CHOICE, "instruction": MULTIPLE_CHOICE_INSTRUCTION,
            "input": stem + "\n" + format_choices(dict(zip(LABELS, choices))), "stem": stem,
            "choices": {"text": choices, "label": list(LABELS)}, "answerKey": key,
            "output": choice_answer(key, rel.answers[0])}


def make_compare(a: Relation, b: Relation, rng: random.Random) -> dict:
    """A two-entity question over two people's nationalities ("yes"/"no"), answered from both evidences."""
    same = DEMONYMS[a.answers[0]] == DEMONYMS[b.answers[0]]
    question = rng.choice(COMPARE_NATIONALITY).format(t=display_title(a.title), u=display_title(b.title))
    return {"task_type": MULTI_HOP_QA, "input": "", "queries": [query_of(a), query_of(b)],
            "evidence": [a.evidence, b.evidence], "evidence_passages": [a.passage_id, b.passage_id], "answers": [],
            "shape": "compare", "instruction": question, "output": "yes" if same else "no",
            "golds": ["yes" if same else "no"]}


MIX = {"category": 4, "occupation": 2, "nationality": 2, "located": 1, "capital_of": 1, "capital": 1, "year": 1,
       "creator": 1}  # relations drawn per round, so the commonest (categories) does not crowd out the rest


def sample_relations(relations: list[Relation], rng: random.Random, spans_per_round: int = 0) -> list[Relation]:
    """At most one fact per article, drawn round by round in the MIX proportions (and `spans_per_round` span
    facts) until every kind is used up."""
    mix = {**MIX, "span": spans_per_round} if spans_per_round else MIX
    by_kind: dict[str, list[Relation]] = defaultdict(list)
    for r in relations:
        if _base(r.kind) in mix:
            by_kind[_base(r.kind)].append(r)
    for facts in by_kind.values():
        rng.shuffle(facts)
    picked, used = [], set()
    while any(by_kind.values()):
        for kind, count in mix.items():
            taken = 0
            while taken < count and by_kind[kind]:
                rel = by_kind[kind].pop()
                if rel.title not in used:
                    used.add(rel.title)
                    picked.append(rel)
                    taken += 1
    return picked


def pools_of(relations: list[Relation]) -> dict[str, list[Relation]]:
    pools: dict[str, list[Relation]] = defaultdict(list)
    for r in relations:
        pools[r.kind].append(r)
    return pools


def compare_pairs(rels: list[Relation], n: int, rng: random.Random) -> list[tuple[Relation, Relation]]:
    """Up to `n` pairs of people for two-entity questions, about half of them of the same nationality."""
    people = [r for r in rels if r.kind == "nationality"]
    pairs, used = [], set()
    for a in people:
        if len(pairs) == n:
            break
        if a.title in used:
            continue
        same = rng.random() < 0.5
        for b in people:
            if b.title not in used and b.title != a.title and \
                    (DEMONYMS[b.answers[0]] == DEMONYMS[a.answers[0]]) == same:
                pairs.append((a, b))
                used |= {a.title, b.title}
                break
    return pairs


def train_items(rels: list[Relation], pools: dict[str, list[Relation]], n: int, rng: random.Random) -> list[dict]:
    """`n` training items: one in eight a two-entity comparison; the rest take open, choice and claim turns, a
    claim turn giving a true/false pair on one fact (so a verdict can only be learnt from the fact, not the prior):
    about half claims, a quarter each open and choice; in shuffled order."""
    pairs = compare_pairs(rels, n // 8, rng)
    items = [make_compare(a, b, rng) for a, b in pairs]
    used = {r.title for pair in pairs for r in pair}
    shapes, turn = ["claim", "open", "choice", "open", "claim", "choice"], 0
    for rel in (r for r in rels if r.title not in used):
        if len(items) >= n:
            break
        shape = shapes[turn % len(shapes)]
        if shape == "claim":
            made = make_claims(rel, pools[rel.kind], rng, "train", (True, False))[:n - len(items)]
        else:
            made = [item] if (item := make_item(shape, rel, pools[rel.kind], rng, "train")) else []
        items += made
        turn += bool(made)
    rng.shuffle(items)
    return [{**item, "id": f"train_{i}", "dataset_name": f"demo_{item['shape']}"} for i, item in enumerate(items)]


def dev_items(rels: list[Relation], pools: dict[str, list[Relation]], n: int, rng: random.Random) -> dict[str, list[dict]]:
    """`n` items per dev task, each from its own article: popqa (open), pubhealth (claim), arc_c (choice)."""
    out: dict[str, list[dict]] = {task: [] for task in DEV_TASKS}
    shapes = dict(zip(DEV_TASKS, ("open", "claim", "choice")))
    pending = iter(rels)
    for task in reversed(DEV_TASKS):  # the choice task first: it can fail for want of distractors, open never does
        for rel in pending:
            if len(out[task]) == n:
                break
            item = make_item(shapes[task], rel, pools[rel.kind], rng, "dev")
            if item:
                out[task].append({**item, "id": f"dev_{task}_{len(out[task])}"})
    return out


# ----------------------------------------------------------------------------------------------- passages
def _holds(ctx: dict, item: dict) -> bool:
    """Whether a passage holds the item's evidence sentence (or is one of its evidence passages)."""
    text = normalize_space(ctx["text"])
    return str(ctx["id"]) in item["evidence_passages"] or any(normalize_space(e) in text for e in item["evidence"])


def training_ctxs(item: dict, hits: list[dict], store, n_docs: int, miss: bool, rng: random.Random) -> list[dict] | None:
    """The passages a training item is located over, in retrieval order as at inference: for a hit, the top
    retrieved ones, with any evidence passage retrieval missed put in place of a random non-evidence one; for a
    miss, the retrieved ones with every evidence passage removed."""
    keep = ["id", "title", "text"]
    hits = [{k: h[k] for k in keep} for h in hits]
    want = n_docs * len(item["queries"])
    if miss:
        others = [h for h in hits if not _holds(h, item)]
        return others[:want] if len(others) >= n_docs else None
    ctxs = hits[:want]
    for pid in item["evidence_passages"]:
        if any(str(c["id"]) == str(pid) for c in ctxs):
            continue
        if spare := [i for i, c in enumerate(ctxs) if not _holds(c, item)]:
            row = store.get(pid)
            ctxs[rng.choice(spare)] = {"id": str(pid), "title": row["title"], "text": row["text"]}
    return ctxs


def dev_record(task: str, item: dict, ctxs: list[dict]) -> dict:
    """A dev item in the paper's file shape for `task` (Self-RAG's PopQA / PubHealth / ARC-Challenge files)."""
    ctxs = [{"id": str(c["id"]), "title": c["title"], "text": c["text"], "score": round(float(c["score"]), 4)}
            for c in ctxs]
    if task == "popqa":
        return {"id": item["id"], "question": item["instruction"], "answers": item["golds"], "ctxs": ctxs}
    if task == "pubhealth":
        return {"id": item["id"], "question": item["claim"], "answers": item["golds"], "ctxs": ctxs}
    return {"id": item["id"], "question": item["stem"], "choices": item["choices"], "answerKey": item["answerKey"],
            "ctxs": ctxs}


def demo_retriever(passages: str | None, passages_embeddings: str | None, encoder: str | None):
    """The dense retriever the demo uses: over `passages` (a TSV; with `passages_embeddings`, a glob of its
    shards), else over the embedded corpus (embeddings computed once and cached)."""
    from smart.retrieval.retriever import Retriever, ensure_embedded_index

    encoder = encoder or defaults.EMBEDDED
    if passages_embeddings:
        return Retriever.from_paths(encoder, passages or defaults.EMBEDDED, passages_embeddings)
    return ensure_embedded_index(encoder, passages or defaults.EMBEDDED)


def article_topics(corpus_json: str | Path | None) -> dict[str, str]:
    import json

    data = json.loads(Path(corpus_json or defaults.corpus_json()).read_text(encoding="utf-8"))
    return {normalize_space(a.get("title") or k): a.get("topic") or "" for k, a in data.items()}


def build_demo_data(output_dir: str | Path, n_train: int = 400, n_dev: int = 50, n_docs: int = 3, seed: int = 0,
                    corpus_json: str | Path | None = None, passages: str | None = None,
                    passages_embeddings: str | None = None, encoder: str | None = None, tokenizer=None,
                    span_facts_per_round: int = SPAN_FACTS_PER_ROUND) -> dict:
    """Write train_long.jsonl, train_short.jsonl, {popqa,pubhealth,arc_c}_dev.jsonl and stats.json (+ the steps'
    files under work/). Dev items are retrieved by their question (static retrieval, top 5 stored), as in the
    paper's evaluation files. Every step reruns from scratch (seconds once the corpus embeddings exist).
    `span_facts_per_round` mixes span facts (`span_facts`) with the relations, that many per 13 relations, into
    training and dev alike (0: relations only)."""
    out, work = Path(output_dir), Path(output_dir) / "work"
    work.mkdir(parents=True, exist_ok=True)
    for step in ("intent", "located"):
        (work / f"{step}.jsonl").unlink(missing_ok=True)
    retriever = demo_retriever(passages, passages_embeddings, encoder)
    relations = extract_relations(retriever.store, article_topics(corpus_json), spans=span_facts_per_round > 0)
    rng = random.Random(seed)
    picked = sample_relations(relations, rng, span_facts_per_round)
    n_dev_articles = 4 * n_dev
    if len(picked) < n_dev_articles + 20:
        raise InputError(f"{retriever.store.path}: facts found in only {len(picked)} articles, need more than "
                         f"{n_dev_articles + 20} for --n_dev {n_dev}")
    dev_rels, train_rels = picked[:n_dev_articles], picked[n_dev_articles:]
    pools = pools_of(relations)
    train = train_items(train_rels, pools, n_train, rng)
    dev = dev_items(dev_rels, pools, n_dev, random.Random(f"{seed}-dev"))  # unmoved by changes to the training mix
    if short := {task: len(items) for task, items in dev.items() if len(items) < n_dev}:
        raise InputError(f"{retriever.store.path}: too few facts for --n_dev {n_dev} per task (got {short}); "
                         "use a larger corpus or a smaller --n_dev")

    write_jsonl(work / "items.jsonl", train)
    run_intent(str(work / "items.jsonl"), str(work / "intent.jsonl"), teacher=None)
    intent = [row for _, row in iter_jsonl(work / "intent.jsonl")]
    hits = retriever.search_merged([row["queries"] for row in intent], n_docs + 3)
    retrieved, misses = [], 0
    for row, found in zip(intent, hits):
        miss = rng.random() < MISS_SHARE
        ctxs = training_ctxs(row, found, retriever.store, n_docs if len(row["queries"]) == 1 else 2, miss, rng)
        if ctxs:
            misses += miss
            if miss and row["shape"] == "claim":
                row = {**row, "output": row["golds"][0]}  # no fact to read the value from: the verdict alone
            retrieved.append({**row, "ctxs": ctxs, "miss": miss})
    write_jsonl(work / "retrieved.jsonl", retrieved)
    located = work / "located.jsonl"
    run_locate(str(work / "retrieved.jsonl"), str(located), teacher=None)
    rows = [(line, row) for line, row in iter_jsonl(located)
            if row["miss"] or any(c["relevant"] for c in row["ctxs"])]  # a hit whose evidence was cut is dropped
    items, longs, shorts, rejected = combine(rows)
    write_jsonl(out / "train_long.jsonl", longs)
    write_jsonl(out / "train_short.jsonl", shorts)

    stats = trajectory_stats(items, longs + shorts, tokenizer)
    stats["dev"] = {}
    for task, task_items in dev.items():
        questions = [d["stem"] if task == "arc_c" else d.get("claim") or d["instruction"] for d in task_items]
        records = [dev_record(task, d, c) for d, c in zip(task_items, retriever.search(questions, 5))]
        write_jsonl(out / f"{task}_dev.jsonl", records)
        in_top3 = sum(any(_holds(c, d) for c in r["ctxs"][:n_docs]) for d, r in zip(task_items, records))
        stats["dev"][task] = {"n": len(records), "evidence_in_top3": in_top3}
    stats.update(misses=sum(bool(i.get("miss")) for i in items), shapes=dict(sorted(
        (s, sum(i["shape"] == s for i in items)) for s in {i["shape"] for i in items})),
        relations=dict(sorted((k, len(v)) for k, v in pools.items())),
        rejected={k: len(v) for k, v in rejected.items()})
    write_json(out / "stats.json", stats)
    log.info("demo data in %s: %d long, %d short, dev %s", out, len(longs), len(shorts), stats["dev"])
    return stats

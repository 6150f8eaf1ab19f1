"""The data-creation teacher: an OpenAI-compatible chat endpoint or a local model, and a resumable item runner.

- `OpenAITeacher`: one shared `openai` async client over its aiohttp transport; bounded concurrency, hard per-request
  timeout, retries with exponential backoff and full jitter on 429, 5xx, timeouts, connection errors and garbled
  replies; temperature 0. The base URL and key come from OPENAI_BASE_URL / OPENAI_API_KEY and are never logged or
  written.
- `LocalTeacher`: `smart.inference.backends.load_backend(kind, path).chat(...)` behind the same `chat` coroutine; concurrent
  requests are gathered into batches, so construction runs offline (e.g. with the embedded SmolLM2).
- `run_resumable`: feeds items to an async `process(item)` with a pool of workers and appends each finished row to a
  `smart.io.ResumableJsonl` keyed by id: a rerun skips finished ids, a kill loses only the items in flight.
- `run_batched`: the same over fixed, ordered chunks of items (`process_batch(chunk)`), for steps whose prompts go to
  the teacher together (`chat_all`), so a local teacher answers the same batches every run.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from smart.io import ResumableJsonl, exit_on_input_error, iter_jsonl, write_json

log = logging.getLogger(__name__)


@dataclass
class Reply:
    text: str
    truncated: bool = False  # the teacher stopped at its token limit


class TeacherError(RuntimeError):
    """A request that failed for good (retries exhausted or not retryable): the item is skipped and counted."""


class TeacherFatal(RuntimeError):
    """A failure no retry or other item can fix (bad key, unknown model): the run stops."""


class GarbledReply(ValueError):
    """A 200 response whose JSON is not a chat completion (retried like a garbled body)."""


def parse_reply(data: object) -> Reply:
    """The first choice's text of a chat-completion JSON body (no choices: empty text)."""
    try:
        choice = data["choices"][0] if data["choices"] else None
        text = (choice["message"].get("content") or "") if choice else ""
        return Reply(text=text, truncated=bool(choice and choice.get("finish_reason") == "length"))
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise GarbledReply(f"not a chat completion ({type(e).__name__})") from None


@dataclass
class TeacherStats:
    requests: int = 0
    retries: int = 0
    failures: int = 0
    retry_reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "retries": self.retries, "failures": self.failures,
                "retry_reasons": dict(self.retry_reasons)}


class OpenAITeacher:
    """Chat completions from any OpenAI-compatible server, temperature 0."""

    def __init__(self, model_name: str, concurrency: int = 8, timeout: float = 60.0, max_retries: int = 6,
                 backoff_base: float = 1.0, backoff_max: float = 60.0, max_tokens: int = 512,
                 base_url: str | None = None, api_key: str | None = None):
        import openai

        self.model_name, self.timeout, self.max_retries = model_name, timeout, max_retries
        self.backoff_base, self.backoff_max, self.max_tokens = backoff_base, backoff_max, max_tokens
        self.stats = TeacherStats()
        self._limit = asyncio.Semaphore(concurrency)
        self._client = openai.AsyncOpenAI(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",  # local servers need none
            max_retries=0, timeout=timeout,  # retries are ours: counted, jittered, bounded by the semaphore
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )
        self._retryable = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                           openai.APIConnectionError, asyncio.TimeoutError, json.JSONDecodeError,
                           GarbledReply)  # the last three: a hung or garbled response
        self._fatal = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
        self._status_error = openai.APIStatusError

    def _delay(self, attempt: int, error: Exception) -> float:
        """Full-jitter exponential backoff; a server's Retry-After (seconds) is a floor, within backoff_max."""
        delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** attempt))
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            delay = max(delay, min(float(retry_after), self.backoff_max))
        return delay

    async def chat(self, messages: list[dict]) -> Reply:
        attempt = 0
        while True:
            try:
                async with self._limit:
                    self.stats.requests += 1
                    # the client's raw POST: its per-request walk of the typed parameters and the typed
                    # response model cost more client CPU than the request itself (bench/bench_teacher.py)
                    data = await asyncio.wait_for(
                        self._client.post("/chat/completions", cast_to=object, body={
                            "model": self.model_name, "messages": messages, "temperature": 0.0,
                            "max_tokens": self.max_tokens}),
                        timeout=self.timeout + 1.0)
                    reply = parse_reply(data)
            except self._fatal as e:
                raise TeacherFatal(f"teacher endpoint refused the request ({type(e).__name__}, HTTP {e.status_code})") from None
            except self._retryable as e:
                if attempt == self.max_retries:
                    self.stats.failures += 1
                    raise TeacherError(f"gave up after {attempt + 1} attempts: {type(e).__name__}") from None
                self.stats.retries += 1
                self.stats.retry_reasons[type(e).__name__] += 1
                await asyncio.sleep(self._delay(attempt, e))
                attempt += 1
                continue
            except self._status_error as e:  # 400 and other client errors: retrying cannot help
                self.stats.failures += 1
                raise TeacherError(f"HTTP {e.status_code} ({type(e).__name__})") from None
            return reply

    async def chat_all(self, conversations: list[list[dict]]) -> list[Reply]:
        """The replies to all conversations, in order (concurrent requests, bounded as `chat`)."""
        return list(await asyncio.gather(*(self.chat(m) for m in conversations)))

    async def aclose(self) -> None:
        await self._client.close()


class LocalTeacher:
    """A local chat model (`smart.inference.backends`), greedy; concurrent `chat` calls are answered in batches."""

    def __init__(self, kind: str, model: str, batch_size: int = 8, max_tokens: int = 256, backend: Any = None,
                 **options: Any):
        """`backend`: an already loaded backend (anything with `chat` and `close`) instead of loading `kind`/`model`."""
        from smart.inference.backends import load_backend

        self.backend = backend or load_backend(kind, model, **options)
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.stats = TeacherStats()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def chat(self, messages: list[dict]) -> Reply:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, future))
        return await future

    async def chat_all(self, conversations: list[list[dict]]) -> list[Reply]:
        """The replies to all conversations, in order, from one backend call: the same list gives the same batches,
        so the same greedy replies, every run."""
        return await self._answer(conversations) if conversations else []

    async def _answer(self, conversations: list[list[dict]]) -> list[Reply]:
        self.stats.requests += len(conversations)
        try:
            texts = await asyncio.to_thread(self.backend.chat, conversations, self.max_tokens)
        except Exception as e:  # noqa: BLE001 - a backend failure fails these items, counted
            self.stats.failures += len(conversations)
            raise TeacherError(f"local teacher failed: {e}") from None
        return [Reply(text=text or "") for text in texts]

    async def _serve(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0)  # let the other workers enqueue their requests
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                replies = await self._answer([m for m, _ in batch])
            except TeacherError as e:
                for _, future in batch:
                    future.set_exception(e)
                continue
            for (_, future), reply in zip(batch, replies):
                future.set_result(reply)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.backend.close()


Teacher = OpenAITeacher | LocalTeacher


def add_teacher_args(parser, max_tokens: int) -> None:
    """The teacher flags shared by the data-creation CLIs (`max_tokens`: the step's default reply budget)."""
    g = parser.add_argument_group("teacher")
    g.add_argument("--teacher", default="openai", choices=["openai", "hf", "vllm", "answer"],
                   help="openai: an OpenAI-compatible endpoint (OPENAI_BASE_URL, OPENAI_API_KEY from the environment); "
                        "hf/vllm: a local chat model at --model_name (`embedded` = SmolLM2); answer: no model, the offline "
                        "answer-guided teacher (keyword queries; the sentence holding the gold answer, claim or option)")
    g.add_argument("--model_name", default="gpt-3.5-turbo-0125", help="endpoint model name, or local model path")
    g.add_argument("--concurrency", type=int, default=8, help="requests in flight (local: batch size)")
    g.add_argument("--timeout", type=float, default=60.0, help="hard limit per request, seconds")
    g.add_argument("--max_retries", type=int, default=6, help="retries per request on 429/5xx/timeouts/connection errors")
    g.add_argument("--backoff_base", type=float, default=1.0, help="first backoff, seconds (doubles per retry, jittered)")
    g.add_argument("--max_tokens", type=int, default=max_tokens, help="max tokens per teacher reply")


def make_teacher(args) -> Teacher | None:
    """The teacher named by the CLI flags (None for the offline `answer` teacher)."""
    if args.teacher == "answer":
        return None
    if args.teacher == "openai":
        return OpenAITeacher(args.model_name, concurrency=args.concurrency, timeout=args.timeout,
                             max_retries=args.max_retries, backoff_base=args.backoff_base, max_tokens=args.max_tokens)
    from smart.defaults import resolve_llm

    return LocalTeacher(args.teacher, resolve_llm(args.model_name), batch_size=args.concurrency, max_tokens=args.max_tokens)


# ----------------------------------------------------------------------------------------------- runner
@dataclass
class RunSummary:
    """What a step did: items written (this run and before), items failed or rejected (with ids), teacher counts."""

    total: int = 0
    done_before: int = 0
    written: int = 0
    failed_ids: list[str] = field(default_factory=list)
    rejected: dict[str, list[str]] = field(default_factory=dict)  # bad input rows: reason -> ids
    flags: dict[str, int] = field(default_factory=dict)  # per-row notes over the whole output file
    flagged_ids: dict[str, list[str]] = field(default_factory=dict)
    teacher: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self, max_ids: int = 50) -> dict:
        return {
            "total": self.total, "done_before": self.done_before, "written": self.written,
            "failed": len(self.failed_ids), "failed_ids": self.failed_ids[:max_ids],
            "rejected": {k: len(v) for k, v in self.rejected.items()},
            "rejected_ids": {k: v[:max_ids] for k, v in self.rejected.items()},
            "flags": self.flags, "flagged_ids": {k: v[:max_ids] for k, v in self.flagged_ids.items()},
            "teacher": self.teacher, "seconds": round(self.seconds, 2),
        }


def flag_counts(rows: Iterable[dict]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Count the `flags` notes of rows (e.g. a counted fallback), with the ids of the rows carrying each."""
    counts: Counter = Counter()
    ids: dict[str, list[str]] = {}
    for row in rows:
        for flag in row.get("flags", []):
            counts[flag] += 1
            ids.setdefault(flag, []).append(str(row.get("id")))
    return dict(sorted(counts.items())), ids


def run_resumable(items: list[dict], process: Callable[[dict], Awaitable[dict]], output: str | os.PathLike,
                  concurrency: int = 8, teacher: Teacher | None = None, desc: str = "items") -> RunSummary:
    """Run `process` over the items not yet in `output` (keyed by `id`), `concurrency` at a time; append each row.

    A `TeacherError` fails only its item (not written, so a rerun retries it); `TeacherFatal` stops the run.
    """
    async def work(todo: list[dict], done: Callable) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        for item in todo:
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                await done([item], _as_list(process(item)))

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(todo))))))

    return _run(items, work, output, teacher, desc)


def run_batched(items: list[dict], process_batch: Callable[[list[dict]], Awaitable[list[dict]]],
                output: str | os.PathLike, batch_size: int = 64, teacher: Teacher | None = None,
                desc: str = "items") -> RunSummary:
    """Like `run_resumable`, but the items not yet in `output` go to `process_batch` in fixed chunks of `batch_size`,
    in input order, one chunk at a time, and each chunk's rows are appended in order. With a local teacher every
    chunk's prompts are one backend call (`LocalTeacher.chat_all`), so a run's greedy replies do not depend on
    timing. A `TeacherError` fails its chunk's items (not written, so a rerun retries them)."""
    size = max(1, batch_size)

    async def work(todo: list[dict], done: Callable) -> None:
        for i in range(0, len(todo), size):
            chunk = todo[i:i + size]
            await done(chunk, process_batch(chunk))

    return _run(items, work, output, teacher, desc)


async def _as_list(row: Awaitable[dict]) -> list[dict]:
    return [await row]


def _run(items: list[dict], work: Callable, output: str | os.PathLike, teacher: Teacher | None,
         desc: str) -> RunSummary:
    """The runners' frame: skip the ids already in `output`, let `work(todo, done)` feed the rest to `done(items,
    their pending rows)`, which appends the rows or counts the items failed on a `TeacherError`; close the teacher;
    fill the summary."""
    from tqdm import tqdm

    start = time.monotonic()
    summary = RunSummary(total=len(items))
    with ResumableJsonl(output) as out:
        todo = [item for item in items if str(item["id"]) not in out]
        summary.done_before = len(items) - len(todo)
        bar = tqdm(total=len(todo), desc=desc, disable=None)

        async def done(batch: list[dict], pending: Awaitable[list[dict]]) -> None:
            try:
                rows = await pending
            except TeacherError as e:
                log.warning("%s%s: %s", batch[0]["id"], f" and {len(batch) - 1} more" if len(batch) > 1 else "", e)
                summary.failed_ids += [str(item["id"]) for item in batch]
            else:
                for row in rows:
                    out.write(row)
                summary.written += len(rows)
            bar.update(len(batch))

        async def main() -> None:
            try:
                await work(todo, done)
            finally:
                if teacher is not None:
                    await teacher.aclose()

        asyncio.run(main())
        bar.close()
    summary.flags, summary.flagged_ids = flag_counts(row for _, row in iter_jsonl(output)) if Path(output).exists() else ({}, {})
    summary.teacher = teacher.stats.as_dict() if teacher is not None else {}
    summary.seconds = time.monotonic() - start
    return summary


def write_summary(output: str | os.PathLike, summary: RunSummary) -> Path:
    """Write the summary beside the output (`<output>.summary.json`) and return its path."""
    path = Path(str(output) + ".summary.json")
    write_json(path, summary.as_dict())
    return path


@contextlib.contextmanager
def cli_errors():
    """For CLIs: bad input or a refusing endpoint prints one line and exits 2, with no traceback."""
    with exit_on_input_error(TeacherFatal):
        yield


def report(output: str | os.PathLike, summary: RunSummary) -> None:
    """Print a step's summary and write it beside its output; exit 1 when items failed (a rerun retries them)."""
    path = write_summary(output, summary)
    print(json.dumps(summary.as_dict(max_ids=10), indent=1))
    print(f"summary written to {path}", file=sys.stderr)
    if summary.failed_ids:
        print(f"error: {len(summary.failed_ids)} items failed; run the same command again to retry them", file=sys.stderr)
        raise SystemExit(1)

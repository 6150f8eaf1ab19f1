"""The teacher against a real HTTP OpenAI-compatible server on 127.0.0.1: retries, timeouts, failures, resumability."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smart.data.intent import run_intent
from smart.io import write_jsonl
from openai_stub import StubOpenAI
from smart.data.teacher import OpenAITeacher, TeacherError, TeacherFatal

REPO = Path(__file__).resolve().parent.parent


def last_request(messages: list[dict]) -> str:
    """The request of an intent prompt (the text after its last `Request:`)."""
    return messages[-1]["content"].rsplit("Request:\n", 1)[-1].split("\nQueries:")[0]


def answer_queries(messages: list[dict]) -> str:
    return f"search {last_request(messages)}\nbackground of {last_request(messages)}"


def items(n: int) -> list[dict]:
    return [{"id": f"q{i}", "dataset_name": "toy", "task_type": "open_qa", "instruction": f"question number {i}?",
             "input": "", "output": f"answer {i}"} for i in range(n)]


def ask(teacher: OpenAITeacher, contents: list[str]) -> list:
    async def main():
        try:
            return await asyncio.gather(*(teacher.chat([{"role": "user", "content": c}]) for c in contents),
                                        return_exceptions=True)
        finally:
            await teacher.aclose()

    return asyncio.run(main())


def test_retries_on_429_500_timeout_and_garbled_then_succeeds():
    faults = {"a": ["429", "500"], "b": ["503", "hang"], "c": ["bad_json", "wrong_shape"], "d": ["length"]}
    with StubOpenAI(faults=faults, hang_seconds=15.0) as server:
        teacher = OpenAITeacher("stub", base_url=server.url, api_key="test-key", timeout=0.5, backoff_base=0.01,
                                max_retries=3, concurrency=4)
        start = time.monotonic()
        replies = ask(teacher, ["a", "b", "c", "d", "e"])
        elapsed = time.monotonic() - start
    assert [r.text for r in replies] == [f"echo: {c}" for c in "abcde"]
    assert [r.truncated for r in replies] == [False, False, False, True, False]
    assert teacher.stats.retries == 6 and teacher.stats.failures == 0
    assert teacher.stats.retry_reasons == {"RateLimitError": 1, "InternalServerError": 2, "APITimeoutError": 1,
                                           "JSONDecodeError": 1, "GarbledReply": 1}
    assert server.counts["requests"] == 11 and server.counts["hang"] == 1
    assert elapsed < 10.0  # the hung request was cut at its 0.5 s timeout, not waited out (15 s)


def test_gives_up_after_max_retries_and_stops_on_auth_errors():
    with StubOpenAI(faults={"doomed": ["500"] * 10, "auth": ["401"]}) as server:
        teacher = OpenAITeacher("stub", base_url=server.url, timeout=2.0, backoff_base=0.01, max_retries=2)
        doomed, fine = ask(teacher, ["doomed", "fine"])
        assert isinstance(doomed, TeacherError) and fine.text == "echo: fine"
        assert teacher.stats.failures == 1 and teacher.stats.retries == 2
        teacher = OpenAITeacher("stub", base_url=server.url, timeout=2.0, backoff_base=0.01, max_retries=2)
        (refused,) = ask(teacher, ["auth"])
        assert isinstance(refused, TeacherFatal)


def test_concurrency_is_bounded_and_used():
    with StubOpenAI(latency=0.1) as server:
        teacher = OpenAITeacher("stub", base_url=server.url, concurrency=4)
        replies = ask(teacher, [f"m{i}" for i in range(16)])
    assert len(replies) == 16 and all(not isinstance(r, Exception) for r in replies)
    assert 1 < server.max_in_flight <= 4


def test_step_fails_items_then_rerun_finishes_them(tmp_path):
    write_jsonl(tmp_path / "items.jsonl", items(6))
    out = tmp_path / "intent.jsonl"
    with StubOpenAI(respond=answer_queries, faults={"number 3?": ["500"] * 3}) as server:
        teacher = OpenAITeacher("stub", base_url=server.url, backoff_base=0.01, max_retries=2)
        summary = run_intent(str(tmp_path / "items.jsonl"), str(out), teacher, concurrency=3)
        assert summary.failed_ids == ["q3"] and summary.written == 5 and summary.teacher["failures"] == 1
        teacher = OpenAITeacher("stub", base_url=server.url, backoff_base=0.01, max_retries=2)
        summary = run_intent(str(tmp_path / "items.jsonl"), str(out), teacher, concurrency=3)
    assert summary.done_before == 5 and summary.written == 1 and summary.failed_ids == []
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"q{i}" for i in range(6)]
    assert all(r["queries"] == [f"search question number {r['id'][1:]}?", f"background of question number {r['id'][1:]}?"]
               for r in rows)


def run_cli(server: StubOpenAI, src: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "secret-test-key"}
    cmd = [sys.executable, str(REPO / "data_creation" / "reconstruct_intent.py"), "--input_file", str(src),
           "--output_file", str(out), "--model_name", "stub", "--concurrency", "4", "--backoff_base", "0.01"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_run_resumes_to_the_same_output(tmp_path):
    src = tmp_path / "items.jsonl"
    write_jsonl(src, items(80))
    full, resumed = tmp_path / "full.jsonl", tmp_path / "resumed.jsonl"
    with StubOpenAI(respond=answer_queries, latency=0.05, faults={"number 7?": ["429"], "number 50?": ["500"]}) as server:
        proc = run_cli(server, src, full)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert "secret-test-key" not in stdout + stderr + full.read_text()
        summary = json.loads(stdout)
        assert summary["written"] == 80 and summary["teacher"]["retries"] == 2

        proc = run_cli(server, src, resumed)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not resumed.exists() or resumed.read_text().count("\n") < 20):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = resumed.read_text().count("\n")
        assert 20 <= partial < 80
        with open(resumed, "a") as f:  # a write torn by the kill
            f.write('{"id": "q79", "queries": ["tor')
        proc = run_cli(server, src, resumed)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert json.loads(stdout)["done_before"] >= 20
    lines = resumed.read_text().splitlines()
    assert len(lines) == 80 and len({json.loads(line)["id"] for line in lines}) == 80
    assert sorted(lines) == sorted(full.read_text().splitlines())


@pytest.mark.slow
def test_local_teacher_runs_the_intent_step_offline(tmp_path, tiny_llama_dir):
    from smart.data.teacher import LocalTeacher

    write_jsonl(tmp_path / "items.jsonl", items(5))
    teacher = LocalTeacher("hf", str(tiny_llama_dir), batch_size=4, max_tokens=8)
    batch_sizes, chat = [], teacher.backend.chat
    teacher.backend.chat = lambda conversations, n: batch_sizes.append(len(conversations)) or chat(conversations, n)
    summary = run_intent(str(tmp_path / "items.jsonl"), str(tmp_path / "intent.jsonl"), teacher, concurrency=4)
    assert summary.written == 5 and summary.teacher["requests"] == 5
    assert sum(batch_sizes) == 5 and max(batch_sizes) == 4  # concurrent requests were answered as one batch
    rows = [json.loads(line) for line in (tmp_path / "intent.jsonl").read_text().splitlines()]
    assert all(r["queries"] and len(r["queries"]) <= 3 for r in rows)  # a random tiny model: fallbacks are fine

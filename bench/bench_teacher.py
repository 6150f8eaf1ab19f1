"""Teacher throughput against the local scripted OpenAI-compatible server with a fixed latency.

    python bench/bench_teacher.py                    # concurrency 1, 8, 32; 200 ms per request
    python bench/bench_teacher.py --concurrency 64 128 --rounds 20

Runs the real intent step (resumable JSONL writes included) over rounds x concurrency items per level and prints
items/s next to the bound concurrency / latency, their ratio (1.0 = no overhead at all), and the client's CPU time
per item (when rate x CPU/item nears the cores free to the client, the client is CPU-bound). The server runs in its
own process (`python tests/openai_stub.py`), so its CPU does not compete with the client's for one interpreter lock.
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smart.data.intent import run_intent
from smart.data.teacher import OpenAITeacher
from smart.io import write_jsonl

STUB_SERVER = Path(__file__).resolve().parents[1] / "tests" / "openai_stub.py"  # a test helper, run as a script


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="levels to measure")
    p.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    p.add_argument("--rounds", type=int, default=10, help="items per level = rounds x concurrency")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"{'concurrency':>11} {'items':>6} {'seconds':>8} {'items/s':>8} {'bound':>8} {'ratio':>6} {'client CPU ms/item':>19}")
    server = subprocess.Popen([sys.executable, str(STUB_SERVER), "--latency", str(args.latency)],
                              stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    try:
        n = measure(args, url)
    finally:
        server.kill()
        server.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"server process CPU: {1000 * (usage.ru_utime + usage.ru_stime) / n:.1f} ms per request "
          f"({os.cpu_count()} cores here, load average {os.getloadavg()[0]:.1f})")


def measure(args: argparse.Namespace, url: str) -> int:
    """Print one row per concurrency level; returns the number of items run in all."""
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for c in args.concurrency:
            n = args.rounds * c
            src, out = Path(tmp) / f"items_{c}.jsonl", Path(tmp) / f"out_{c}.jsonl"
            write_jsonl(src, [{"id": f"i{i}", "dataset_name": "bench", "task_type": "open_qa",
                               "instruction": f"question {i}?", "output": "x"} for i in range(n)])
            teacher = OpenAITeacher("stub", base_url=url, concurrency=c, timeout=30.0)
            start, cpu = time.perf_counter(), time.process_time()
            summary = run_intent(str(src), str(out), teacher, concurrency=c)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            assert summary.written == n, summary.as_dict()
            total += n
            rate, bound = n / seconds, c / args.latency
            print(f"{c:>11} {n:>6} {seconds:>8.2f} {rate:>8.1f} {bound:>8.1f} {rate / bound:>6.2f} {1000 * cpu / n:>19.1f}")
    return total


if __name__ == "__main__":
    main()

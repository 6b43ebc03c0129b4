"""`mmlens run` on CPU with 1 thread against torch's default (one per core), idle and busy.

    python benchmarks/run_threads.py [--benchmark shapes|priors] [--items 24] [--rounds 3]
                                     [--threads 1,2] [--busy 0,1]

Each contender is a whole `python -m mmlens run BENCHMARK --model mmlens/BENCHMARK --limit ITEMS
--out NEW --threads N` in its own process, process start (about 5 s of imports) included; N = 0
leaves the flag out (the run's own default); N = the core count is torch's default. Contenders
run in interleaved rounds, each idle ("busy=0") and while other processes keep `--busy` cores
spinning, as on a shared machine. Reported: wall seconds and the child's CPU seconds (user +
system), median and best over the rounds.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Process


def _spin() -> None:
    while True:
        pass


def run_once(benchmark: str, items: int, threads: int, max_new_tokens: int) -> dict:
    """One `mmlens run` in a fresh process: wall and CPU seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "mmlens", "run", benchmark, "--out", f"{folder}/run"]
        command += ["--model", f"mmlens/{benchmark}"]
        command += ["--limit", str(items), "--max-new-tokens", str(max_new_tokens), "--quiet"]
        if threads:
            command += ["--threads", str(threads)]
        before = os.times()
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return {"wall_s": wall, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmark", choices=["shapes", "priors"], default="shapes")
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}", help="0 = the flag left out")
    parser.add_argument("--busy", default="0,1", help="cores kept busy by other processes")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    busy_levels = [int(b) for b in args.busy.split(",")]
    results: dict[str, list[dict]] = {}
    for round_index in range(args.rounds):
        for busy in busy_levels:
            spinners = [Process(target=_spin, daemon=True) for _ in range(busy)]
            for spinner in spinners:
                spinner.start()
            try:
                for count in threads if round_index % 2 == 0 else threads[::-1]:
                    name = f"threads={count or 'default'} busy={busy}"
                    result = run_once(args.benchmark, args.items, count, args.max_new_tokens)
                    results.setdefault(name, []).append(result)
                    print(name, json.dumps({k: round(v, 2) for k, v in result.items()}))
            finally:
                for spinner in spinners:
                    spinner.terminate()
    chip = platform.processor() or platform.machine()
    print(f"\n{platform.node()}: {os.cpu_count()} cores, {chip}")
    print(
        f"{args.items} items of the built-in {args.benchmark} benchmark, mmlens/{args.benchmark}, "
        f"{args.max_new_tokens} new tokens at most, {args.rounds} rounds"
    )
    for name, runs in results.items():
        walls = [r["wall_s"] for r in runs]
        cpus = [r["cpu_s"] for r in runs]
        print(
            f"{name:22s} wall median {statistics.median(walls):6.1f} s, best {min(walls):6.1f} s;"
            f" CPU median {statistics.median(cpus):6.1f} s"
        )


if __name__ == "__main__":
    main()

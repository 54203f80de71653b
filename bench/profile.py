"""`python -m bench.profile`: where Kintsugi's API process spends its CPU on the hot path.

    python -m bench.profile                      # 20 s at concurrency 10
    python -m bench.profile --seconds 30 --concurrency 1

Starts the bench's `kintsugi` system (fake upstream at 0 ms, a fresh dev server, API and shared worker), drives
`/v1/chat/completions` and records the API process — which runs the synchronous jobs — with py-spy (samples of
the thread holding the GIL only: Python's CPU, not threads waiting on a queue or a socket). Prints the
frames holding the largest share of samples, inclusive (our own code, then everything), and writes the
collapsed stacks to `bench/results/profile-api.txt` (open them in https://www.speedscope.app or feed them to
`flamegraph.pl`). py-spy attaches with ptrace: it needs root or `kernel.yama.ptrace_scope=0`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import httpx

from bench.load import REQUEST_TIMEOUT_S
from bench.measure import probe
from bench.systems import Target, app_target, dev_server, kintsugi_database, start_upstream
from ops.processes import ProcessGroup

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "bench" / "results" / "profile-api.txt"
OURS = ("api/", "client/", "domain/", "workflows/", "activities/", "schemas/", "store/", "worker.py", "settings.py")
"""Where a frame of our own code comes from (py-spy names frames `function (path:line)`)."""


def frame_shares(collapsed: Iterable[str], *, ours: bool) -> list[tuple[str, float]]:
    """Functions by their share of all samples, largest first. `ours`: our own code's functions, inclusive
    (a sample counts for every one of them on its stack); otherwise every function, self (a sample counts for
    the one it was taken in). Lines are py-spy's raw output, `a;b;c <count>`, each frame `name (path:line)`."""
    total = 0
    shares: Counter[str] = Counter()
    for line in collapsed:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        functions = [_function(frame) for frame in stack.split(";")]
        counted = {f for f in functions if _is_ours(f)} if ours else {functions[-1]}
        for function in counted:
            shares[function] += int(count)
    return [(function, n / total) for function, n in shares.most_common()] if total else []


def _function(frame: str) -> str:
    """`name (path)`: a frame without its line, so a function's lines count together."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rpartition(':')[0]})" if ":" in where else frame


def _is_ours(function: str) -> bool:
    path = function.rpartition("(")[2]
    return path.startswith(OURS) and "site-packages" not in path


async def load_while(recorder: subprocess.Popen[bytes], target: Target, concurrency: int) -> tuple[int, int]:
    """Closed-loop callers until the recorder exits: (answered, failed)."""
    answered = failed = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S) as client:

        async def caller() -> None:
            nonlocal answered, failed
            while recorder.poll() is None:
                response = await client.post(target.url, json=target.body, headers=target.headers)
                if response.status_code == 200:
                    answered += 1
                else:
                    failed += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return answered, failed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=int, default=20, help="how long to record (default 20)")
    parser.add_argument("--concurrency", type=int, default=10, help="callers in flight (default 10)")
    parser.add_argument("--top", type=int, default=25, help="frames printed per list (default 25)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"collapsed stacks (default {OUTPUT})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="kintsugi-profile-"))
    group = ProcessGroup(log_dir=workdir, cwd=REPO)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        upstream = start_upstream(group, 0)
        with (
            dev_server(group, workdir / "kintsugi") as server,
            app_target(
                "kintsugi", group, workdir / "kintsugi", server, upstream, kintsugi_database(workdir / "kintsugi")
            ) as target,
        ):
            probe(target)
            record = [py_spy, "record", "--pid", str(target.meters["api"].pid), "--duration", str(args.seconds),
                      "--rate", "250", "--format", "raw", "--nonblocking", "--gil",
                      "--output", str(args.output)]  # fmt: skip
            recorder = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            answered, failed = asyncio.run(load_while(recorder, target, args.concurrency))
            _, error = recorder.communicate(timeout=30)
            if recorder.returncode != 0:
                print(f"bench.profile: py-spy failed: {error.decode(errors='replace')[-500:]}", file=sys.stderr)
                return 1
    finally:
        group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{answered} jobs answered ({failed} failed) at concurrency {args.concurrency} in {args.seconds} s")
    lines = args.output.read_text().splitlines()
    for title, ours in (("our code, inclusive", True), ("every function, self", False)):
        print(f"\nAPI process, share of samples, {title}:")
        for frame, share in frame_shares(lines, ours=ours)[: args.top]:
            print(f"  {share * 100:5.1f}%  {frame}")
    print(f"\nbench.profile: collapsed stacks in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

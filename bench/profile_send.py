"""Where a sent message's CPU goes: one campaign sent in this process (engine.send_campaign) into
smtp-sink, with the CPU time of this process, of its PostgreSQL backend and of the sink, per message.
With --profile, also the top functions by CPU time (cProfile on the process clock, so the figures are
not skewed by other processes; the profiler itself inflates call-heavy code several times).

    .venv/bin/python -m bench.profile_send [--recipients 5000] [--profile] [--database URL]

Not part of `make bench`: it answers "where does the time go", the table answers "how fast"."""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_send import _finished, _make_app, _prepare_campaign  # noqa: E402
from bench.common import running_sink  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sink_pid(port: int) -> int:
    """The smtp-sink process listening on `port` (running_sink does not hand out its pid)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command and command[0].endswith(b"smtp-sink") and f":{port}".encode() in b" ".join(command):
                return int(entry.name)
    raise RuntimeError(f"no smtp-sink process on port {port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1/mailapp_bench_app")
    args = parser.parse_args(argv)

    with running_sink(allow_fallback=False) as sink:
        sink_process = sink_pid(sink.port)
        app = _make_app(args.database, "memory://")
        from sqlalchemy import text

        from mailapp.extensions import db
        from mailapp.sending import engine

        with app.app_context():
            app.config["SEND_RUN_SECONDS"] = 3600  # one run, no continuation task
            campaign_id = _prepare_campaign(args.recipients)
            backend = db.session.scalar(text("SELECT pg_backend_pid()"))
            db.session.commit()
            profiler = cProfile.Profile(time.process_time) if args.profile else None

            def clocks() -> tuple[float, ...]:
                return (time.process_time(), cpu_seconds(backend), cpu_seconds(sink_process),
                        time.perf_counter())

            before = clocks()
            if profiler:
                profiler.enable()
            engine.send_campaign(campaign_id)
            if profiler:
                profiler.disable()
            after = clocks()
            assert _finished(campaign_id), "the campaign did not finish"
    count = args.recipients
    worker, postgres, smtp_sink, wall = (end - start for start, end in zip(before, after, strict=True))
    print(f"{count} messages in {wall:.2f} s: {count / wall:.0f} msg/s in one process"
          f"{' (profiled: slower)' if profiler else ''}")
    print(f"CPU per message: sender {worker / count * 1e3:.3f} ms, PostgreSQL backend "
          f"{postgres / count * 1e3:.3f} ms, smtp-sink {smtp_sink / count * 1e3:.3f} ms")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())

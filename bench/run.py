"""Benchmark runner: starts the servers itself, drives them with bench/loadgen.mjs, and writes
a results file (JSON + Markdown) and a plot.

    python bench/run.py                      # every scenario, every target, twice
    python bench/run.py --quick              # a short smoke run
    python bench/run.py --scenarios saturation --targets bare-1,pg-1 --repeat 2

Targets:
  bare-1 / bare-2   the ceiling: bench/bare_server.py, 1 process / 2 processes + Redis
  pg-1 / pg-2       the platform on PostgreSQL + Redis, 1 / 2 processes
  sqlite            the platform on the embedded default (SQLite, one process)
  pg-1+outbox       pg-1 with a no-op durable subscriber (bench/outbox_server.py): every
                    durable event also writes an outbox row, which the dispatcher delivers

Every server process is pinned to core 0 and the load generator to core 1 (taskset), as in
docs/benchmarks.md; PostgreSQL and Redis are not pinned. The platform runs with the
send_message, per-socket and new-conversation limits raised (CHATD_RATE_LIMIT_MESSAGES,
CHATD_SOCKET_RATE_LIMIT_MESSAGES, CHATD_NEW_CONVERSATIONS_PER_*) so that the limiters are
exercised but never refuse: every simulated visitor comes from 127.0.0.1, and the benchmark
measures throughput, not the limits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BASE = PG_ADMIN.rsplit("/", 1)[0]
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")

SCENARIOS = ("saturation", "steady", "idle", "storm")
TARGETS = ("bare-1", "pg-1", "bare-2", "pg-2", "sqlite")
OUTBOX_SUFFIX = "+outbox"


def log(msg: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def taskset(core: str) -> list[str]:
    return ["taskset", "-c", core] if shutil.which("taskset") and os.cpu_count() > 1 else []


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server {url} not healthy")


class Target:
    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.outbox = name.endswith(OUTBOX_SUFFIX)
        if self.outbox:
            name = name.removesuffix(OUTBOX_SUFFIX)
        self.kind, _, n = name.partition("-")
        self.nprocs = int(n) if n else 1
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.urls: list[str] = []
        self.env = dict(os.environ)
        self.data: dict = {}
        self.db: str | None = None

    def start(self, orgs: int, agents: int) -> None:
        if self.kind == "pg":
            self.db = f"chatd_bench_{int(time.time())}_{os.getpid()}"
            subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {self.db}"], check=True)
            subprocess.run(["redis-cli", "-u", REDIS, "flushdb"], check=True, capture_output=True)
            self.env.update(DATABASE_URL=f"{PG_BASE}/{self.db}", REDIS_URL=REDIS)
        elif self.kind == "sqlite":
            self.env.pop("DATABASE_URL", None)
            self.env.pop("REDIS_URL", None)
            self.env["CHATD_DATA_DIR"] = str(self.workdir / "sqlite")
        if self.kind in ("pg", "sqlite"):
            self.env.update(
                CHATD_DEMO="false",
                CHATD_RATE_LIMIT_MESSAGES="1000000",
                CHATD_SOCKET_RATE_LIMIT_MESSAGES="1000000",
                CHATD_NEW_CONVERSATIONS_PER_ADDRESS="1000000",
                CHATD_NEW_CONVERSATIONS_PER_TOKEN="1000000",
                CHATD_LOGIN_ATTEMPTS="1000000",
            )
            log(f"{self.name}: creating {orgs} orgs x {agents} agents")
            out = subprocess.run(
                [
                    sys.executable,
                    str(BENCH / "setup_data.py"),
                    "--orgs",
                    str(orgs),
                    "--agents",
                    str(agents),
                ],
                cwd=ROOT,
                env=self.env,
                check=True,
                capture_output=True,
                text=True,
            )
            self.data = json.loads(out.stdout)
        for i in range(self.nprocs):
            port = free_port()
            if self.kind == "bare":
                cmd = [sys.executable, str(BENCH / "bare_server.py"), "--port", str(port)]
                if self.nprocs > 1:
                    cmd += ["--redis", REDIS]
            elif self.outbox:
                cmd = [
                    sys.executable,
                    str(BENCH / "outbox_server.py"),
                    "serve",
                    "--port",
                    str(port),
                ]
            else:
                cmd = [sys.executable, "-m", "chatd", "serve", "--port", str(port)]
            logf = open(self.workdir / f"{self.name}-{i}.log", "wb")  # noqa: SIM115
            env = {**self.env, "PYTHONPATH": str(ROOT)}
            proc = subprocess.Popen(
                taskset("0") + cmd, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT
            )
            self.procs.append(proc)
            self.urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(self.urls, self.procs, strict=True):
            wait_healthy(url, proc)
        log(f"{self.name}: {self.nprocs} process(es) up at {', '.join(self.urls)}")

    def orgs_for(self, n_orgs: int, n_agents: int) -> list[dict]:
        if self.data:
            return self.data["orgs"]
        return [{"embed_token": "", "agents": [{} for _ in range(n_agents)]} for _ in range(n_orgs)]

    def outbox_rows(self) -> dict[str, int]:
        """Outbox rows by status (pg targets): shows the rows were written and delivered."""
        if self.kind != "pg" or not self.db:
            return {}
        out = subprocess.run(
            [
                "psql",
                f"{PG_BASE}/{self.db}",
                "-Atc",
                "SELECT status, count(*) FROM outbox GROUP BY 1",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {k: int(v) for k, v in (line.split("|") for line in out.split())}

    def stats(self) -> list[tuple[float, int]]:
        return [proc_stats(p.pid) for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.db:
            subprocess.run(
                ["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)"],
                check=False,
            )


def run_loadgen(cfg: dict, workdir: Path, on_ready=None) -> dict:
    path = workdir / f"cfg-{cfg['scenario']}-{cfg['run_id']}.json"
    path.write_text(json.dumps(cfg))
    errlog = workdir / f"loadgen-{cfg['run_id']}.log"
    proc = subprocess.Popen(
        taskset("1") + ["node", str(BENCH / "loadgen.mjs"), str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=errlog.open("wb"),
        text=True,
    )
    result = None
    for line in proc.stdout:
        line = line.strip()
        if not line.startswith("{"):
            continue
        data = json.loads(line)
        if (data.get("ready") or data.get("measuring") or data.get("measured")) and on_ready:
            on_ready(data)
        elif "scenario" in data:
            result = data
    proc.wait()
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {errlog.read_text()[-3000:]}")
    return result


def scenario_config(name: str, args, target: Target, run_id: str) -> dict:
    cfg = {
        "scenario": name,
        "mode": "bare" if target.kind == "bare" else "chatd",
        "targets": target.urls,
        "run_id": run_id,
        "agents_per_org": args.agents,
    }
    cfg["orgs"] = target.orgs_for(args.orgs, args.agents)
    if name == "saturation":
        cfg.update(pairs=args.pairs, window=args.window, duration=args.duration)
    elif name == "steady":
        cfg.update(pairs=args.pairs, rate=args.rate, duration=args.steady_duration)
    elif name == "idle":
        cfg.update(visitors=args.idle_visitors, hold_seconds=4)
    elif name == "storm":
        cfg.update(
            pairs=args.storm_visitors,
            active_senders=args.storm_senders,
            sender_pause_ms=20,
            offline_ms=1000,
        )
    return cfg


def start_profiler(target: Target, name: str, seconds: float, workdir: Path):
    """py-spy attached to the first server process for the scenario's measured part."""
    if not shutil.which("py-spy") or target.kind == "bare":
        return None, None
    path = workdir / f"profile-{target.name}-{name}.txt"
    proc = subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(target.procs[0].pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(path),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, path


def summarize_profile(path: Path, top: int = 25) -> dict:
    """Top functions by own time and by inclusive time, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
            for f in stack.split(";")
        ]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n

    def pct(d):
        return [
            (k, round(100 * v / total, 1))
            for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]
        ]

    return {"samples": total, "own": pct(own), "inclusive": pct(incl)}


def run_one(name: str, args, target: Target, run_id: str, workdir: Path) -> dict:
    cfg = scenario_config(name, args, target, run_id)
    profiled: list = []
    before = target.stats()
    t0 = time.time()
    ready_stats: list = []
    # CPU and wall time of the timed part only (not connection set-up or the final checks).
    window: dict[str, tuple[float, list]] = {}

    def on_line(data):
        if data.get("ready"):
            time.sleep(2)  # let the last joins settle before reading RSS
            ready_stats.extend(target.stats())
        elif data.get("measuring"):
            window["start"] = (time.time(), target.stats())
            if args.profile:
                # Profile the timed part only, not the connection set-up.
                profiled.extend(start_profiler(target, name, cfg.get("duration") or 10, workdir))
        elif data.get("measured"):
            window["end"] = (time.time(), target.stats())

    result = run_loadgen(cfg, workdir, on_line)
    profiler, path = profiled if profiled else (None, None)
    after = target.stats()
    if profiler is not None:
        profiler.wait()
        if path.exists():
            result["profile"] = summarize_profile(path)
    wall = time.time() - t0
    result["target"] = target.name
    result["outbox_rows"] = target.outbox_rows()
    result["server_cpu_s"] = [round(a[0] - b[0], 2) for a, b in zip(after, before, strict=True)]
    result["server_rss_mib"] = [round(a[1] / 2**20, 1) for a in after]
    result["wall_s"] = round(wall, 1)
    if name == "idle" and ready_stats:
        grown = sum(r[1] for r in ready_stats) - sum(b[1] for b in before)
        result["kib_per_connection"] = round(grown / 1024 / max(1, result["connected"]), 1)
        result["server_rss_mib_ready"] = [round(r[1] / 2**20, 1) for r in ready_stats]
    if "start" in window and "end" in window:
        (t0w, s0), (t1w, s1) = window["start"], window["end"]
        result["server_cpu_pct"] = [
            round(100 * (b[0] - a[0]) / (t1w - t0w), 1) for a, b in zip(s0, s1, strict=True)
        ]
        result["server_rss_mib"] = [round(b[1] / 2**20, 1) for b in s1]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--orgs", type=int, default=25)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=500, help="conversations (2 clients each)")
    parser.add_argument("--window", type=int, default=1, help="unacked sends per sender")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--steady-duration", type=float, default=60)
    parser.add_argument("--idle-visitors", type=int, default=10_000)
    parser.add_argument("--storm-visitors", type=int, default=2000)
    parser.add_argument("--storm-senders", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="small numbers for a smoke run")
    parser.add_argument("--profile", action="store_true", help="py-spy the first platform process")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.orgs, args.agents, args.pairs = 1, 2, 5, 10
        args.duration, args.steady_duration, args.rate = 3, 3, 50
        args.idle_visitors, args.storm_visitors, args.storm_senders = 200, 50, 5
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else RESULTS / f"results-{stamp}"
    workdir = Path(tempfile.mkdtemp(prefix="chatd-bench-"))
    scenarios = [s for s in args.scenarios.split(",") if s]
    results = []
    meta = {
        "started": stamp,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "node": subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "args": vars(args),
    }
    for tname in [t for t in args.targets.split(",") if t]:
        applicable = [s for s in scenarios if not (s == "idle" and tname.endswith("-2"))]
        if not applicable:
            continue
        for rep in range(args.repeat):
            target = Target(tname, workdir)
            try:
                target.start(args.orgs, args.agents)
                for s in applicable:
                    if s == "storm" and target.kind == "bare":
                        continue  # nothing to replay without storage
                    run_id = f"{tname}-{s}-{rep}-{int(time.time())}"
                    log(f"{tname} run {rep + 1}: {s}")
                    r = run_one(s, args, target, run_id, workdir)
                    r["repeat"] = rep + 1
                    results.append(r)
                    log(json.dumps(r))
                    out.with_suffix(".json").write_text(
                        json.dumps({"meta": meta, "results": results}, indent=1)
                    )
            finally:
                target.stop()
    report = render_markdown(meta, results)
    out.with_suffix(".md").write_text(report)
    try:
        plot(results, out.with_suffix(".png"))
    except ImportError:
        log("matplotlib not installed: no plot (pip install -e '.[bench]')")
    print(report)
    log(f"results in {out}.json / .md / .png; logs in {workdir}")


def _ceiling(results: list[dict], scenario: str, nprocs: int) -> float | None:
    vals = [
        r["msgs_per_s"]
        for r in results
        if r["scenario"] == scenario and r["target"] == f"bare-{nprocs}"
    ]
    return sum(vals) / len(vals) if vals else None


def render_markdown(meta: dict, results: list[dict]) -> str:
    lines = [
        f"# Benchmark results {meta['started']}",
        "",
        f"{meta['cpus']} cores, Python {meta['python']}, Node {meta['node']}",
        "",
    ]
    sat = [r for r in results if r["scenario"] == "saturation"]
    if sat:
        lines += [
            "## Saturation",
            "",
            "| target | run | clients | msgs/s | deliveries/s | ratio to bare (same procs) | ack p50 / p99 ms | server CPU % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sat:
            n = int(r["target"][-1]) if r["target"][-1].isdigit() else 1
            ceiling = _ceiling(results, "saturation", n)
            ratio = f"{r['msgs_per_s'] / ceiling:.2f}" if ceiling else "n/a"
            ack = r["ack_latency_ms"]
            lines.append(
                f"| {r['target']} | {r['repeat']} | {r['clients']} | {r['msgs_per_s']:.0f} | "
                f"{r['deliveries_per_s']:.0f} | {ratio} | {ack.get('p50', 0):.1f} / {ack.get('p99', 0):.1f} | "
                f"{r.get('server_cpu_pct')} |"
            )
        lines.append("")
    st = [r for r in results if r["scenario"] == "steady"]
    if st:
        lines += [
            "## Steady",
            "",
            "| target | run | rate | delivered / expected | deliver p50 / p99 / p99.9 ms | ack p50 / p99 ms | server CPU % | RSS MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in st:
            d, a = r["deliver_latency_ms"], r["ack_latency_ms"]
            lines.append(
                f"| {r['target']} | {r['repeat']} | {r['rate']:.0f}/s | {r['delivered']}/{r['expected']} "
                f"({100 * r['delivered_ratio']:.2f}%) | {d.get('p50', 0):.1f} / {d.get('p99', 0):.1f} / "
                f"{d.get('p999', 0):.1f} | {a.get('p50', 0):.1f} / {a.get('p99', 0):.1f} | "
                f"{r.get('server_cpu_pct')} | {r['server_rss_mib']} |"
            )
        lines.append("")
    idle = [r for r in results if r["scenario"] == "idle"]
    if idle:
        bare_idle = [r["kib_per_connection"] for r in idle if r["target"] == "bare-1"]
        bare_kib = sum(bare_idle) / len(bare_idle) if bare_idle else None
        lines += [
            "## Idle",
            "",
            "| target | run | connected | KiB per connection | ratio to bare-1 | RSS MiB |",
            "|---|---|---|---|---|---|",
        ]
        for r in idle:
            kib = r.get("kib_per_connection")
            ratio = f"{kib / bare_kib:.2f}" if bare_kib and kib else "n/a"
            lines.append(
                f"| {r['target']} | {r['repeat']} | {r['connected']} | "
                f"{kib} | {ratio} | {r.get('server_rss_mib_ready')} |"
            )
        lines.append("")
    storm = [r for r in results if r["scenario"] == "storm"]
    if storm:
        lines += [
            "## Reconnect storm",
            "",
            "| target | run | visitors | caught up in s | messages checked | missed | duplicates |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in storm:
            lines.append(
                f"| {r['target']} | {r['repeat']} | {r['visitors']} | {r['caught_up_seconds']:.2f} | "
                f"{r['messages_checked']} | {r['missed']} | {r['duplicates']} |"
            )
        lines.append("")
    profiled = [r for r in results if r.get("profile")]
    if profiled:
        lines += ["## Profiles (py-spy, own time, top 12)", ""]
        for r in profiled:
            p = r["profile"]
            lines.append(
                f"{r['target']} {r['scenario']} run {r['repeat']} ({p['samples']} samples):"
            )
            lines.append("")
            lines += [f"    {pct:5.1f}%  {name}" for name, pct in p["own"][:12]]
            lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    sat = [r for r in results if r["scenario"] == "saturation"]
    labels = [f"{r['target']}#{r['repeat']}" for r in sat]
    ax1.bar(
        labels,
        [r["msgs_per_s"] for r in sat],
        color=["#999" if "bare" in x else "#1f6feb" for x in labels],
    )
    ax1.set_title("Saturation: persisted messages/s (bare = ceiling)")
    ax1.tick_params(axis="x", rotation=45)
    st = [r for r in results if r["scenario"] == "steady"]
    pct = ["p50", "p99", "p999"]
    width = 0.8 / max(1, len(st))
    for i, r in enumerate(st):
        d = r["deliver_latency_ms"]
        ax2.bar(
            [x + i * width for x in range(3)],
            [d.get(p, 0) for p in pct],
            width,
            label=f"{r['target']}#{r['repeat']}",
        )
    ax2.set_xticks([x + 0.4 - width / 2 for x in range(3)], pct)
    ax2.set_yscale("log")
    ax2.set_title("Steady: send→deliver latency (ms)")
    if st:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

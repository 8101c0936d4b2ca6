"""Where the CPU went while a benchmark ran, sampled from /proc (Linux) by a process of its own (a sampling thread in
the benchmark's process would take the GIL from the very loop it measures).

Each process's CPU seconds, grouped by what the process is (Ray names its actor and task processes
``ray::<Class>.<method>``; a process the benchmark started itself is its child; anything else is "other"), over the
whole block; and over the block's busy seconds (those in which a process of a kind named in ``busy`` ran flat out: the
trial's steady state, without its startup or the builds before it) the cores each kind used, how often the busy
process's threads were preempted, and the machine's context switches (every wake-up of any process is one). One stat
file per process per ``every`` seconds: cheap enough not to be the overhead it measures.
"""
import json
import os
import select
import subprocess
import sys
import time
from collections import defaultdict

TICK = os.sysconf("SC_CLK_TCK")
RAY_DAEMONS = ("raylet", "gcs_server", "dashboard_agent", "runtime_env_agent", "log_monitor", "monitor.py",
               "dashboard.py", "default_worker.py")


class CpuSampler:
    """``with CpuSampler(busy=("ray::RayTrainWorker",)) as s: ...`` then ``s.result``. What ran before the block is
    not counted; a process that lived shorter than ``every`` seconds may be missed."""

    def __init__(self, busy: tuple[str, ...], every: float = 1.0, busy_cores: float = 1.5):
        self.args = [json.dumps(list(busy)), str(every), str(busy_cores), str(os.getpid())]
        self.result: dict = {}

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, *self.args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.proc.stdout.readline()  # the first sample is taken
        return self

    def __exit__(self, *exc):
        out, _ = self.proc.communicate("stop\n", timeout=60)
        self.result = json.loads(out)


def _stat(pid: str) -> tuple[int, int, str] | None:
    """(CPU ticks, minor page faults) of a process so far, and its parent's pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12]), int(fields[7]), fields[1]  # utime + stime, minflt, ppid


def _preempted(pid: str) -> int:
    """How often the process's threads were preempted (involuntary context switches), so far."""
    n = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                n += int(next(line for line in f if line.startswith("nonvoluntary_ctxt_switches")).split()[1])
        except (OSError, StopIteration):
            pass
    return n


def _switches() -> int:
    with open("/proc/stat") as f:
        return int(next(line for line in f if line.startswith("ctxt")).split()[1])


def _label(pid: str, bench: str, parent: str) -> str:
    if pid == bench:
        return "benchmark process"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    if cmd.startswith("ray::"):
        return cmd.split()[0]
    daemon = next((name for name in RAY_DAEMONS if name in cmd), None)
    return daemon or ("benchmark's child" if parent == bench else "other")  # "other": whatever else runs here


def sample(busy: tuple[str, ...], every: float, busy_cores: float, bench: str) -> dict:
    """Sample until a line (or EOF) arrives on stdin; the summary."""
    me = str(os.getpid())
    total: dict[str, float] = defaultdict(float)
    in_busy: dict[str, float] = defaultdict(float)
    busy_s = faults = preempted = switches = 0
    labels: dict[str, str] = {}
    t0, last, sw0, pre0 = None, {}, 0, {}
    start = time.perf_counter()
    while True:
        now, ticks = time.perf_counter(), {}
        for pid in os.listdir("/proc"):
            if pid.isdigit() and pid != me and (s := _stat(pid)) is not None:
                ticks[pid] = s[:2]
                labels[pid] = _label(pid, bench, s[2])  # Ray renames a worker for each task or actor it runs
        sw = _switches()
        pre = {pid: _preempted(pid) for pid in ticks if labels[pid].startswith(busy)}  # a few processes
        if t0 is None:
            print("started", flush=True)
        else:
            dt = now - t0
            delta = {pid: ((t - last.get(pid, (0, 0))[0]) / TICK, f - last.get(pid, (0, 0))[1])
                     for pid, (t, f) in ticks.items()}  # a process born in the interval counts from 0
            for pid, (d, _) in delta.items():
                total[labels[pid]] += d
            hot = [pid for pid in pre if delta[pid][0] >= busy_cores * dt]
            if hot:
                busy_s += dt
                faults += sum(delta[pid][1] for pid in hot)
                switches += sw - sw0
                preempted += sum(pre[pid] - pre0.get(pid, 0) for pid in hot)
                for pid, (d, _) in delta.items():
                    in_busy[labels[pid]] += d
        t0, last, sw0, pre0 = now, ticks, sw, pre
        if select.select([sys.stdin], [], [], every)[0]:
            break
    ranked = lambda d: sorted(d.items(), key=lambda kv: -kv[1])  # noqa: E731
    per_s = lambda n: round(n / busy_s) if busy_s else None  # noqa: E731
    return {"wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": {k: round(v, 1) for k, v in ranked(total) if v >= 0.1}, "busy_s": round(busy_s, 1),
            "busy_cores": {k: round(v / busy_s, 3) for k, v in ranked(in_busy) if v >= 0.002 * busy_s},
            "busy_preemptions_per_s": per_s(preempted), "busy_context_switches_per_s": per_s(switches),
            "busy_page_faults_per_s": per_s(faults)}


if __name__ == "__main__":
    busy, every, cores, bench = sys.argv[1:]
    print(json.dumps(sample(tuple(json.loads(busy)), float(every), float(cores), bench)), flush=True)

"""The contracts between modules: no import cycle, config at the ground floor, one metric table, a method added
as one file plus its registry line."""
import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_config
from raysweep.methods import REGISTRY
from raysweep.methods.base import Method
from raysweep.metrics import METRICS, SETTINGS
from raysweep.trial import run_trial

PKG = Path(__file__).resolve().parents[1] / "raysweep"


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its source (function-level imports included)."""
    mods = {}
    for f in PKG.rglob("*.py"):
        name = ".".join(f.relative_to(PKG.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg
                for _ in range(max(0, node.level - 1)):
                    base = base.rsplit(".", 1)[0]
                target = (base + ("." + node.module if node.module else "")) if node.level else node.module
                for a in node.names:
                    graph[m].add(f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names)
        graph[m] = {t for t in graph[m] if t in mods and t != m}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, path = {}, []

    def visit(v):
        state[v] = "open"
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "raysweep.config" in graph and graph["raysweep.config"] == set()  # the ground floor
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_importing_the_config_imports_no_torch():
    code = "import sys, raysweep.config; print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


class Shrink(Method):
    """A toy method: pull every weight towards zero (no settings section)."""

    def unlearning_term(self, model, batches):
        return sum((p ** 2).sum() for p in model.parameters())

    def __call__(self, model, batches, step):
        term = self.unlearning_term(model, batches)
        return term, {"forget": term.detach()}


def _scalars(result: dict) -> set[str]:
    return {k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# numbers a result carries that are not measurements: identities and bookkeeping
NOT_METRICS = {"forget_class", "seed", "attempts", "n_samples_forget", "ar_dimra_max_step", "unlearn_final_loss",
               "attack_lr", "unlearn_resumed_from", "unlearn_shared_from", "attack_resumed_from", "world_size"}


def test_a_method_added_as_one_file_and_a_registry_line_runs_through_a_trial(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "shrink", Shrink)
    cfg = tiny_config(**{"unlearn.method": "shrink", "unlearn.steps": 10, "attack.steps": (0, 3),
                         "pretrain.steps": 12, "eval.reference_seeds": 2, "attack.control": False})
    res = run_trial(cfg, str(tmp_path))
    assert res["method"] == "shrink" and res["status"] == "ok" and res["unlearn_steps_run"] == 10
    assert len(res["unlearn_probe"]) == 10 and res["unlearn_probe"][-1] < res["unlearn_probe"][0]
    # every number the trial reports is in the metric table (or is bookkeeping, or says how it was measured)
    unknown = _scalars(res) - set(METRICS) - set(SETTINGS) - NOT_METRICS
    assert not unknown, f"reported but not in raysweep.metrics.METRICS: {sorted(unknown)}"
    curves = {k for k, v in res.items() if isinstance(v, dict) and k in METRICS}
    assert curves == {k for k, m in METRICS.items() if m.kind == "curve"} - {"ar_dimra_base"}


def test_the_metric_table_says_how_each_metric_is_read():
    for name, m in METRICS.items():
        assert m.direction in ("min", "max") and m.kind in ("scalar", "curve", "progress") and m.meaning, name
    with pytest.raises(Exception, match="not a metric"):
        from raysweep.metrics import check
        check("happiness")


@pytest.mark.parametrize("command", ["trial", "tune", "pretrain", "report"])
def test_help_and_bad_arguments_answer_before_the_model_stack_loads(command):
    """Each command parses first: --help and a rejected argument never wait for torch, Ray or MLflow."""
    for args, rc in ((["--help"], 0), (["--no-such-option"], 2)):
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", f"raysweep.{command}", *args], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        assert res.returncode == rc, res.stderr[-500:]
        assert seconds < 5.0, f"raysweep.{command} {args[0]} took {seconds:.1f}s"  # the stack alone takes 10-20 s


def test_the_sweep_driver_checks_configs_and_finds_shared_artefacts_without_the_model_stack():
    """The driver resolves every trial's config and locates the shared artefacts; none of that may import diffusers
    or torchmetrics (seconds of every sweep's start): method classes load on first lookup, cache keys are keys.py."""
    sys.path.insert(0, str(PKG.parent / "bench"))
    from driver_start import DRIVER, STACK  # what bench/driver_start.py times is what this checks

    code = DRIVER + f"print(len(located))\nprint(sorted(m for m in {STACK} if m in sys.modules))\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-800:]
    assert res.stdout.split("\n")[:2] == ["7", "[]"], res.stdout
    assert REGISTRY["salun"].__name__ == "SalUn" and REGISTRY.get("sa").__name__ == "SelectiveAmnesia"
    assert "salun" in REGISTRY and "nothing" not in REGISTRY and REGISTRY.get("nothing") is None


def test_a_bad_trial_config_is_refused_before_the_model_stack_loads():
    """``python -m raysweep.trial`` resolves its config first: a bad one is one line, and diffusers never loads."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "raysweep.trial", "--method", "nosuch"],
                         capture_output=True, text=True)
    imported = {ln.split("|")[-1].strip() for ln in res.stderr.splitlines() if ln.startswith("import time:")}
    said = [ln for ln in res.stderr.splitlines() if not ln.startswith("import time:")]
    assert res.returncode == 2 and len(said) == 1 and "unknown method 'nosuch'" in said[0], res.stderr[-800:]
    assert "torch" in imported and not imported & {"diffusers", "torchmetrics", "raysweep.diffusion"}


def test_a_benchmark_prints_only_its_result_on_stdout():
    """Ray Tune prints status tables to stdout; a benchmark's stdout must stay one JSON object a script can read."""
    code = ("from common import json_stdout; import subprocess\n"
            "with json_stdout() as emit:\n"
            "    print('a status table', flush=True); subprocess.run(['echo', 'a child process'])\n"
            "    emit({'ratio': 0.5})\n"
            "print('after')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=PKG.parent / "bench")
    assert res.returncode == 0 and res.stdout.splitlines() == ['{"ratio": 0.5}', "after"], (res.stdout, res.stderr)
    assert "a status table" in res.stderr and "a child process" in res.stderr


HELPERS = ("common.py", "cpu_sampler.py")  # imported by the benchmarks, not run
BENCHMARKS = sorted(f.name for f in (PKG.parent / "bench").glob("*.py") if f.name not in HELPERS)


@pytest.mark.parametrize("script", BENCHMARKS)
def test_every_benchmark_starts(script, monkeypatch, capsys):
    """Benchmarks run by hand, rarely: their imports rot unless something loads them (``--help`` imports all).
    Run as ``python bench/<script>`` runs it (as ``__main__``, the script putting bench/ on the path itself), in
    this process: a fresh interpreter per script would only import torch again."""
    import runpy

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(PKG.parent / "bench" / script), run_name="__main__")
    assert e.value.code == 0 and capsys.readouterr().out.startswith("usage:")


def test_the_benchmarks_are_found():
    """Without bench/ the test above has no case and passes by skipping: this one fails instead."""
    assert len(BENCHMARKS) >= 12, BENCHMARKS


def test_the_cpu_sampler_sees_a_process_spin_on_one_core(monkeypatch):
    """bench/cpu_sampler.py on a case whose answer is known: a child spinning for 3 s of its own CPU time uses one
    core, flat out, and those seconds are the busy ones; whatever else the machine runs meanwhile is counted apart, as
    "other". (CPU time, not wall time: on a loaded machine a wall-clock spin gets less than 3 CPU seconds.)"""
    monkeypatch.syspath_prepend(str(PKG.parent / "bench"))
    from cpu_sampler import CpuSampler

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 3:\n    pass"
    with CpuSampler(busy=("benchmark's child",), every=0.25, busy_cores=0.8) as cpu:
        subprocess.run([sys.executable, "-c", spin], check=True)
    r = cpu.result
    assert 2.7 <= r["cpu_s"]["benchmark's child"] <= 3.8 and 2.0 <= r["busy_s"] <= 3.6, r
    assert 0.85 <= r["busy_cores"]["benchmark's child"] <= 1.15, r
    assert r["busy_cores"].get("benchmark process", 0) < 0.2, r  # this process waited

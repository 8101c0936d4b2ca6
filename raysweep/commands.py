"""Every command's arguments, in a module that imports nothing heavy: ``--help`` and a bad argument are answered
before torch, Ray or MLflow load (each command parses with these first, then imports its stack)."""
from __future__ import annotations

import argparse

from .cli import Parser, add_common


def trial_parser() -> argparse.ArgumentParser:
    p = Parser(prog="raysweep.trial", description="One unlearn -> evaluate -> attack trial, without Ray.")
    add_common(p)
    p.add_argument("--method", default="dimum", help="finetune | ga | salun | sa | esd | erasediff | dimum | retrain")
    p.add_argument("--forget-class", type=int, default=3)
    p.add_argument("--target", default="", help="object=NAME | style=NAME | object=NAME,style=NAME "
                                                 "(default: object=<forget class>)")
    p.add_argument("--seed", type=int, default=0, help="seed of unlearning and attack (the base is shared)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same trial from its last saved state")
    return p


def trial_config(args: argparse.Namespace):
    """The trial command's config, resolved (a bad one is a one-line ConfigError; torch's model stack is not loaded)."""
    from .cli import config_from
    from .config import Config

    cfg = Config()
    cfg.unlearn.method, cfg.data.forget_class, cfg.data.target = args.method, args.forget_class, args.target
    cfg.unlearn.seed = cfg.attack.seed = args.seed
    return config_from(args, cfg)


def tune_parser() -> argparse.ArgumentParser:
    p = Parser(prog="raysweep.tune", description="A sweep of unlearn -> attack -> evaluate trials on Ray Tune + Optuna, in MLflow.")
    p.add_argument("experiment", help="experiments/NAME.py exposing `experiment = raysweep.Experiment(...)`")
    p.add_argument("--address", default=None, help="Ray cluster address (auto = the cluster `ray up` started)")
    p.add_argument("--storage", default="runs", help="local directory or s3://bucket/prefix for everything")
    p.add_argument("--mlflow-uri", default=None, help="default: sqlite:///<storage>/<name>/mlflow.db")
    p.add_argument("--num-samples", type=int, default=None)
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--workers", type=int, default=None,
                   help="Ray Train workers per trial, overriding the experiment's: 0 in the trial's process, 1 one "
                        "worker, N > 1 data-parallel (each batch split over N workers)")
    p.add_argument("--cpus-per-trial", type=int, default=None,
                   help="CPUs each trial reserves (its torch threads, shared by its workers), overriding the "
                        "experiment's: a bigger machine then runs more trials at once")
    p.add_argument("--name", default=None, help="sweep name (default: the experiment's name)")
    p.add_argument("--smoke", action="store_true", help="tiny trials: check a sweep end to end in minutes")
    p.add_argument("--resume", action="store_true", help="continue the sweep of the same --name/--storage")
    p.add_argument("--max-failures", type=int, default=1,
                   help="restarts of a trial whose worker died (it continues from its last saved state)")
    p.add_argument("--report", action="store_true", help="write the Pareto/curves/HTML report at the end")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    return p


def pretrain_parser() -> argparse.ArgumentParser:
    p = Parser(prog="raysweep.pretrain", description="Build (or load from the store) the base model and the judge, then evaluate the base.")
    add_common(p)
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (= --set pretrain.steps=N)")
    return p


def report_parser() -> argparse.ArgumentParser:
    p = Parser(prog="raysweep.report", description="Pareto fronts, curves and an HTML report of a sweep's results.parquet.")
    p.add_argument("sweep", help="a sweep directory (holding results.parquet) or its s3:// URI")
    p.add_argument("--x", default=None, help="metric[:min|max] on the x axis (default: the sweep's utility one)")
    p.add_argument("--y", default=None, help="metric[:min|max] on the y axis (default: the sweep's first objective)")
    p.add_argument("--objective", action="append", default=[], help="more objectives for the frontier")
    p.add_argument("--constraint", action="append", default=None, metavar="METRIC<=VALUE",
                   help="only trials meeting it can be on the front (repeatable; default: the sweep's own)")
    p.add_argument("--mlflow-uri", default=None, help="default: the sweep's sqlite store when present")
    p.add_argument("--out", default=None, help="default: SWEEP/report")
    p.add_argument("--json", action="store_true")
    return p

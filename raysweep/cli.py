"""What every raysweep command shares: one-line errors, the common options, the device."""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Callable

from . import stop
from .config import Config, RaysweepError, apply_overrides


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits",
                   help="digits (embedded default) | digits-styles | cifar10 | unlearncanvas")
    p.add_argument("--root", default="", help="cifar10: directory holding cifar-10-batches-py; unlearncanvas: the "
                   "release's <Style>/<Object>/<n>.jpg tree")
    p.add_argument("--out", default="runs", help="output root: a local directory or s3://bucket/prefix")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set pretrain.steps=2000 (repeatable)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")


def config_from(args: argparse.Namespace, cfg: Config | None = None) -> Config:
    cfg = cfg or Config()
    cfg.data.dataset = args.dataset
    cfg.data.root = args.root
    apply_overrides(cfg, args.overrides)
    from .resolve import resolve  # after parsing: it imports torch (datasets, targets)

    return resolve(cfg).cfg


def device_from(name: str) -> str:
    import torch  # only once the arguments are parsed

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise RaysweepError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RaysweepError(f"device {name} requested but CUDA is not available")
    return name


def run(main: Callable[[], dict | None], as_json: bool) -> dict | None:
    """Run a command; a user error is one line on stderr and exit 2, an error of the machine (OSError) one line
    and exit 1; Ctrl-C exits 130 and SIGTERM 143."""
    try:
        with stop.handled():
            out = main()
    except RaysweepError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:  # the machine, not the program: a full disk, a vanished mount, a refused connection
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        raise SystemExit(1) from None
    except (KeyboardInterrupt, stop.Terminated, SystemError) as e:
        asked = _stop_in(e)
        if asked is None:
            raise
        print("error: interrupted (SIGINT)" if isinstance(asked, KeyboardInterrupt) else "error: terminated (SIGTERM)",
              file=sys.stderr)
        stop.exit_with(130 if isinstance(asked, KeyboardInterrupt) else 143)
    if as_json and out is not None:
        print(json.dumps(plain(out), allow_nan=False))
    return out


def _stop_in(e: BaseException | None) -> BaseException | None:
    """The Ctrl-C or SIGTERM behind ``e``: a signal that lands inside C code (an extension module's import) comes back
    as a SystemError whose context is the signal's exception."""
    while e is not None and not isinstance(e, (KeyboardInterrupt, stop.Terminated)):
        e = e.__cause__ or e.__context__
    return e


def plain(obj):
    """JSON without NaN or infinity (invalid JSON): a number that is not finite becomes null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj

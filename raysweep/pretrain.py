"""``python -m raysweep.pretrain --dataset digits [--out DIR] [--json]``: build (or load from the store) the
base model and the judge, then evaluate the base model on every class."""
from __future__ import annotations

if __name__ == "__main__":  # answer --help and bad arguments before the imports below load torch, Ray, MLflow
    from raysweep.commands import pretrain_parser

    pretrain_parser().parse_args()

import sys
import time

from . import bases as bases_
from . import commands, store
from .cli import config_from, device_from, run
from .evaluate import DiffusionGenerator
from .resolve import resolve


def main(argv: list[str] | None = None) -> None:
    args = commands.pretrain_parser().parse_args(argv)

    def job() -> dict:
        start = time.perf_counter()
        cfg = config_from(args)
        if args.steps is not None:
            cfg.pretrain.steps = args.steps
            resolve(cfg)
        device = device_from(args.device)
        store.ensure_writable(args.out, "--out")
        bases = bases_.load_bases(cfg, args.out, progress=sys.stderr.isatty(), device=device)
        gen = DiffusionGenerator(bases.model, cfg.eval, cfg.schedule)
        res = bases.evaluator.evaluate(gen)
        out = {"dataset": cfg.data.dataset, "base_uri": bases.model_uri, "base_cached": bases.cached,
               "ar_mean": sum(res["ar_per_class"]) / len(res["ar_per_class"]),
               **{k: v for k, v in res.items() if k != "retain_acc"},
               "seconds": round(time.perf_counter() - start, 2), "config": cfg.to_dict()}
        if not args.json:
            print(f"judge test acc {out['judge_test_acc']:.3f}; AR mean {out['ar_mean']:.3f}, per class "
                  + " ".join(f"{a:.2f}" for a in out["ar_per_class"])
                  + (f"; object acc {out['object_acc']:.3f}, style acc {out['style_acc']:.3f}" if "style_acc" in out
                     else "")
                  + f"; FID({cfg.eval.fid_extractor}) {out['fid_' + cfg.eval.fid_extractor]:.3f};"
                  f" {out['seconds']:.1f}s; base at {out['base_uri']}")
        return out

    run(job, args.json)


if __name__ == "__main__":
    main()

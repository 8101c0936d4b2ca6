"""``python -m raysweep.pretrain --dataset digits [--out DIR] [--json]``: build (or load from the store) the
base model and the judge, then evaluate the base model on every class."""
from __future__ import annotations

import sys
import time

from . import base
from .cli import Parser, add_common, config_from, device_from, run
from .evaluate import DiffusionGenerator


def main(argv: list[str] | None = None) -> None:
    p = Parser(prog="raysweep.pretrain", description=__doc__)
    add_common(p)
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (= --set pretrain.steps=N)")
    args = p.parse_args(argv)

    def job() -> dict:
        start = time.perf_counter()
        cfg = config_from(args)
        if args.steps is not None:
            cfg.pretrain.steps = args.steps
            cfg.validate()
        device = device_from(args.device)
        bases = base.prepare(cfg, args.out, progress=sys.stderr.isatty(), device=device)
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

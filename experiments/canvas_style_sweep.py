"""The paper's feature setting: forget the style Van_Gogh of UnlearnCanvas on Stable Diffusion, DiMUM against
swap-label (SalUn) over unlearning steps and DiMUM's alternative styles. Needs a GPU per trial, the UnlearnCanvas
release and a diffusers-layout SD directory (e.g. UnlearnCanvas' fine-tuned SD v1.5), named by two variables:

    UNLEARNCANVAS_ROOT=/data/UnlearnCanvas UNLEARNCANVAS_SD=/models/uc-sd-v1-5 \
        python -m raysweep.tune experiments/canvas_style_sweep.py --device cuda

Five styles at 256 px (3,000 paintings, 2.4 GB of pixels per trial); SD is used as it is (pretrain.steps 0).
"""
import os

from ray import tune

import raysweep

NEEDS = {"UNLEARNCANVAS_ROOT": "the UnlearnCanvas release", "UNLEARNCANVAS_SD": "a diffusers-layout SD directory"}
missing = [f"{k} ({v})" for k, v in NEEDS.items() if not os.environ.get(k)]
if missing:
    raise raysweep.RaysweepError(f"canvas_style_sweep needs {' and '.join(missing)}")
STYLES = "Seed_Images,Van_Gogh,Ukiyoe,Picasso,Watercolor"

experiment = raysweep.Experiment(
    name="canvas_style_sweep",
    fixed={"data.dataset": "unlearncanvas", "data.root": os.environ["UNLEARNCANVAS_ROOT"],
          "data.styles": STYLES, "data.resolution": 256, "data.target": "style=Van_Gogh",
          "model.preset": "sd", "model.sd_path": os.environ["UNLEARNCANVAS_SD"], "pretrain.steps": 0,
          "unlearn.batch_size": 8, "unlearn.lr": 1e-5, "attack.batch_size": 8, "attack.lr": 1e-5,
          "attack.steps": (0, 250, 500, 1000), "eval.n_forget": 100, "eval.n_per_class": 10, "eval.steps": 50,
          "eval.guidance": 7.5, "judge.epochs": 10, "judge.batch_size": 64},
    space={
        "unlearn.method": tune.choice(["dimum", "salun"]),
        "unlearn.steps": tune.lograndint(50, 1000),
        "dimum.alternative": tune.choice(["retain", "style:Seed_Images", "style:Ukiyoe"]),
    },
    objectives={"ar_dimra_max": "min", "fid_judge": "min"},
    num_samples=16,
    search="optuna",
    workers=1,
    gpus_per_worker=1.0,
    cpus_per_trial=4,
)

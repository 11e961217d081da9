"""``featdepth experiment``: the ablation runner of :mod:`featdepth.experiments`.

::

    featdepth experiment run    --out DIR [--preset cpu|gpu|tiny|decide|decide_gpu] [--seeds 0 1] [--variants baseline fm_dis_cvt ...]
                                [--steps N] [--feature-steps N] [--real-steps N] [--device cpu|cuda|auto]
                                [--set key=value ...] [--real-set key=value ...] [--no-real] [--no-landscape] [--shared-data DIR] [--dry-run]
    featdepth experiment report DIR      (re-write DIR/report.md from DIR/results.json)
    featdepth experiment presets         (list the presets with their estimated time)

Examples::

    featdepth experiment run --out runs/ablation --preset tiny --dry-run
    featdepth experiment run --out runs/decide --preset decide
    featdepth experiment run --out runs/decide --preset decide --sweep rec_dis_cvt_1e-1   # + the dis/cvt weight sweep
    featdepth experiment run --out runs/ablation --preset cpu --seeds 0 1 --variants baseline fm_dis_cvt
    featdepth experiment run --out runs/real_paper --preset decide --no-synthetic --real-recipe paper --real-set optim.lr=2e-4
    featdepth experiment report runs/ablation
    featdepth experiment report runs/ablation_gpu
    featdepth experiment presets
    featdepth experiment presets > experiment_presets.txt
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any


def _sweep(values: list[str] | None) -> list[str] | None:
    """``--sweep``: ``None`` (the preset's), ``[]`` for ``none``, else the FeatureNet settings."""
    if values is None:
        return None
    return [] if values == ["none"] else list(values)


def _featurenet_seeds(values: list[str] | None) -> list[int] | str | None:
    """``--featurenet-seeds``: ``None`` (the preset's), ``"each"`` or a list of seeds."""
    if values is None:
        return None
    if values == ["each"]:
        return "each"
    try:
        return [int(v) for v in values]
    except ValueError:
        raise SystemExit(f"featdepth experiment: --featurenet-seeds takes seeds (integers) or the word 'each', got {' '.join(values)}")


def cmd_experiment_run(args: argparse.Namespace) -> int:
    from featdepth.experiments.presets import estimate_seconds  # lazy: keeps `featdepth --help` fast
    from featdepth.experiments.runner import BudgetOverrides, RunOptions  # lazy: keeps `featdepth --help` fast
    from featdepth.experiments.runner import configure_preset, run_experiment  # lazy: keeps `featdepth --help` fast
    from featdepth.experiments.runner import amp_of, estimate_line  # lazy: keeps `featdepth --help` fast

    budget = BudgetOverrides(seeds=args.seeds, variants=args.variants, steps=args.steps, feature_steps=args.feature_steps,
                             real_steps=args.real_steps, real_feature_steps=args.real_feature_steps,
                             real_sources=args.real_sources, real_seeds=args.real_seeds, real_size=args.real_size,
                             real_variants=args.real_variants, real_recipe=args.real_recipe,
                             device=args.device, featurenet_seeds=_featurenet_seeds(args.featurenet_seeds),
                             sweep_featurenets=_sweep(args.sweep))
    options = RunOptions(synthetic=not args.no_synthetic, real=not args.no_real, landscape=not args.no_landscape,
                         shared_data=args.shared_data, keep_full_checkpoints=args.keep_checkpoints)
    if args.dry_run:
        p = configure_preset(args.preset, budget)
        est = estimate_seconds(p, real=options.real, landscape=options.landscape, synthetic=options.synthetic,
                               amp=amp_of(args.overrides))
        print(estimate_line(est))  # the estimate first, as `run` logs it
        fn = ("one FeatureNet per seed" if p.featurenet_seeds is None
              else f"FeatureNets of seed(s) {p.featurenet_seeds} shared by all seeds")
        sweep = f"; weight sweep: {', '.join(p.sweep_featurenets)}" if p.sweep_featurenets else ""
        if options.synthetic:
            print(f"preset {p.name}: {len(p.variants)} variants ({', '.join(p.variants)}) x {len(p.seeds)} seeds, "
                  f"{p.depth_steps} depth steps (+{p.feature_steps} FeatureNet steps; {fn}{sweep}), "
                  f"{p.height}x{p.width}, batch {p.batch_size}"
                  + (f"; overrides: {' '.join(args.overrides)}" if args.overrides else ""))
        else:
            print(f"preset {p.name}: synthetic part skipped (--no-synthetic)")
        if options.real and p.real is not None and not p.real.variants:
            print("real data: skipped, none of its variants is among --variants (choose them with --real-variants)")
        elif options.real and p.real is not None:
            r = p.real
            print(f"real data ({', '.join(r.sources)}): {', '.join(r.variants)} x {len(r.seeds)} seeds, {r.depth_steps} "
                  f"depth steps (+{r.feature_steps} FeatureNet steps), {r.height}x{r.width}, batch {r.batch_size}, "
                  f"recipe {r.recipe}" + (f"; overrides: {' '.join(args.real_overrides)}" if args.real_overrides else ""))
        else:
            print("real data: skipped" + (" (--no-real)" if not options.real else ""))
        return 0
    command = "featdepth " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and sys.argv[0] else None
    run_experiment(args.out, args.preset, budget, options, overrides=args.overrides, real_overrides=args.real_overrides,
                   command=command)
    print(f"{args.out}/report.md")
    return 0


def cmd_experiment_report(args: argparse.Namespace) -> int:
    from featdepth.experiments.report import load_results, write_report  # lazy: keeps `featdepth --help` fast

    path = write_report(load_results(args.dir), args.dir)
    print(path)
    return 0


def cmd_experiment_presets(args: argparse.Namespace) -> int:
    from featdepth.experiments.presets import PRESETS, estimate_seconds, format_duration  # lazy: keeps `featdepth --help` fast

    for name, p in PRESETS.items():
        cpu, gpu = estimate_seconds(p, device="cpu"), estimate_seconds(p, device="cuda")
        print(f"{name:10s} {p.height}x{p.width} batch {p.batch_size}, {p.depth_steps} depth steps, {p.feature_steps} "
              f"FeatureNet steps, {len(p.seeds)} seeds, variants {', '.join(p.variants)}; "
              f"~{format_duration(cpu['total'])} on 2 quiet CPU cores, ~{format_duration(gpu['total'])} on one GPU (a guess)")
    return 0


def register(sub: Any) -> None:
    """Add ``featdepth experiment``."""
    exp = sub.add_parser("experiment", help="the paper's ablations: train variants, evaluate per region, write a report",
                         epilog=__doc__.split("Examples::", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = exp.add_subparsers(dest="experiment_command", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("run", help="train and evaluate the variants, write DIR/report.md")
    p.add_argument("--out", required=True, help="output folder (runs, figures, results.json, report.md)")
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "gpu", "decide", "decide_gpu"],
                   help="budget: tiny (seconds, tests), cpu (~25 min on 2 cores), gpu (larger), decide (8 seeds, "
                        "paired statistics, ~85 min on 2 cores), decide_gpu (16 seeds, one GPU)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the preset's)")
    p.add_argument("--variants", nargs="+", help="baseline fm_rec fm_dis fm_dis_cvt joint (default: the preset's)")
    p.add_argument("--steps", type=int, help="depth/pose training steps per run")
    p.add_argument("--feature-steps", type=int, help="FeatureNet stage steps")
    p.add_argument("--real-steps", type=int, help="depth/pose steps of the real-data runs")
    p.add_argument("--real-feature-steps", type=int, help="FeatureNet steps of the real-data runs")
    p.add_argument("--real-sources", nargs="+", choices=["raw", "odom"], help="real clips to train on (default: the preset's)")
    p.add_argument("--featurenet-seeds", nargs="+", metavar="SEED",
                   help="train the synthetic FeatureNets for these seeds only and share them across the depth runs; "
                        "'each' trains one per seed (default: the preset's)")
    p.add_argument("--sweep", nargs="+", metavar="SETTING",
                   help="FeatureNets of the weight sweep, trained for the loss landscape and the feature statistics "
                        "only (no depth runs): rec_dis_cvt_1e-2, rec_dis_cvt_1e-1, or 'none' (default: the preset's; "
                        "decide has none, decide_gpu both)")
    p.add_argument("--real-variants", nargs="+",
                   help="variants of the real-data runs (default: the preset's, restricted to --variants when given)")
    p.add_argument("--real-recipe", choices=["paper", "robust"],
                   help="recipe of the real-data runs: paper (PoseNet output scale 0.01, auto-masking from step 0) "
                        "or robust (the synthetic presets' 0.1, auto-masking from step 200, gradient floor 1e-4; "
                        "what own_video uses); default: the preset's")
    p.add_argument("--real-seeds", type=int, nargs="+", help="seeds of the real-data runs (default: the first of --seeds)")
    p.add_argument("--real-size", type=int, nargs=2, metavar=("H", "W"),
                   help="resolution of the real-data runs, multiples of 32 (default: the preset's)")
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic part (run the real-data part alone)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the preset's, auto)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every synthetic run (repeatable)")
    p.add_argument("--real-set", dest="real_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every real-data run, after the real-clip recipe (repeatable)")
    p.add_argument("--no-real", action="store_true", help="skip the real KITTI clips")
    p.add_argument("--no-landscape", action="store_true", help="skip the loss landscape and FeatureNet statistics")
    p.add_argument("--shared-data", help="folder holding kitti_raw_tiny and kitti_odom_06_tiny (default: ../shared/data)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the full (resumable) checkpoints instead of weights-only model.pt files")
    p.add_argument("--dry-run", action="store_true", help="only print the plan and the time estimate")
    p.set_defaults(func=cmd_experiment_run)

    p = actions.add_parser("report", help="re-write DIR/report.md from DIR/results.json")
    p.add_argument("dir", metavar="DIR", help="the experiment folder (holding results.json)")
    p.set_defaults(func=cmd_experiment_report)

    p = actions.add_parser("presets", help="list the presets and their estimated time")
    p.set_defaults(func=cmd_experiment_presets)

"""``featdepth export onnx|weights|convert-official``.

Examples::

    featdepth export onnx --checkpoint best.pt --out depth.onnx --pose-out pose.onnx
    featdepth export onnx --checkpoint best.pt --out depth.onnx --opset 17 --exporter legacy
    featdepth export weights --checkpoint best.pt --out model.safetensors
    featdepth export weights --checkpoint FeatDepth_MS.pth --out featdepth_ms.safetensors
    featdepth export convert-official --checkpoint FeatDepth_MS.pth --out featdepth_ms.pt
    featdepth export convert-official --checkpoint models/mono+stereo_640x192/ --out md2_ms.pt
"""

from __future__ import annotations

import argparse

from featdepth.cli.common import CLIError, add_official_args, official_options

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth export``."""
    exp = sub.add_parser("export", help="ONNX export, safetensors weights, official checkpoint conversion", epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter).add_subparsers(
        dest="export_command", metavar="ACTION")
    exp.required = True
    p = exp.add_parser("onnx", help="export the depth (and pose) network to ONNX, verified with onnxruntime")
    p.add_argument("--checkpoint", "-k", required=True, help="any checkpoint `featdepth predict` reads")
    p.add_argument("--out", "-o", required=True, help="depth network .onnx")
    p.add_argument("--pose-out", help="pose network .onnx (optional)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "legacy"],
                   help="torch.onnx exporter: dynamo (torch.export) or legacy (TorchScript); auto (default) tries dynamo first")
    p.add_argument("--atol", type=float, default=1e-4, help="onnxruntime vs PyTorch tolerance, relative for depth (default: 1e-4)")
    add_official_args(p)
    p.set_defaults(func=cmd_export_onnx, device="cpu", amp="none")

    p = exp.add_parser("weights", help="write the depth/pose weights as .safetensors (config as metadata; safe to share)")
    p.add_argument("--checkpoint", "-k", required=True, help="any checkpoint `featdepth predict` reads")
    p.add_argument("--out", "-o", required=True, help="output .safetensors file")
    add_official_args(p)
    p.set_defaults(func=cmd_export_weights)

    p = exp.add_parser("convert-official", help="convert an official FeatDepth / monodepth2 checkpoint to featdepth's format")
    p.add_argument("--checkpoint", "-k", required=True, help="official FeatDepth .pth or monodepth2 model folder")
    p.add_argument("--out", "-o", required=True, help="output featdepth checkpoint (.pt)")
    p.add_argument("--allow-partial", action="store_true",
                   help="write the checkpoint even when keys do not map (they are reported)")
    add_official_args(p)
    p.set_defaults(func=cmd_export_convert)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from featdepth.inference.onnx import export_onnx  # lazy: keeps `featdepth --help` fast

    results = export_onnx(
        args.checkpoint,
        args.out,
        pose_out=args.pose_out,
        opset=args.opset,
        exporter=args.exporter,
        atol=args.atol,
        official=official_options(args),
    )
    for r in results:
        print(r.summary())
    return 0


def cmd_export_weights(args: argparse.Namespace) -> int:
    from featdepth.inference.loading import export_weights  # lazy: keeps `featdepth --help` fast

    if not str(args.out).endswith(".safetensors"):
        raise CLIError(f"--out must end in .safetensors, got {args.out}")
    path = export_weights(args.checkpoint, args.out, official=official_options(args))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB; load it with featdepth.load or --checkpoint)")
    return 0


def cmd_export_convert(args: argparse.Namespace) -> int:
    from featdepth.inference.official import convert_official_checkpoint  # lazy: keeps `featdepth --help` fast

    report = convert_official_checkpoint(args.checkpoint, args.out, strict=not args.allow_partial, **official_options(args))
    print(report.summary())
    print(f"wrote {args.out}")
    return 0



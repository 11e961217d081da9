"""``featdepth export onnx|convert-official``.

Examples::

    featdepth export onnx --checkpoint best.pt --out depth.onnx --pose-out pose.onnx
    featdepth export convert-official --checkpoint FeatDepth_MS.pth --out featdepth_ms.pt
"""

from __future__ import annotations

import argparse

from featdepth.cli.common import add_official_args, official_options

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth export``."""
    exp = sub.add_parser("export", help="ONNX export, official checkpoint conversion", epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter).add_subparsers(
        dest="export_command", metavar="ACTION")
    exp.required = True
    p = exp.add_parser("onnx", help="export the depth (and pose) network to ONNX, verified with onnxruntime")
    p.add_argument("--checkpoint", "-k", required=True)
    p.add_argument("--out", "-o", required=True, help="depth network .onnx")
    p.add_argument("--pose-out", help="pose network .onnx (optional)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "legacy"],
                   help="torch.onnx exporter: dynamo (torch.export) or legacy (TorchScript); auto (default) tries dynamo first")
    p.add_argument("--atol", type=float, default=1e-4, help="onnxruntime vs PyTorch tolerance, relative for depth (default: 1e-4)")
    add_official_args(p)
    p.set_defaults(func=cmd_export_onnx, device="cpu", amp="none")

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


def cmd_export_convert(args: argparse.Namespace) -> int:
    from featdepth.inference.official import convert_official_checkpoint  # lazy: keeps `featdepth --help` fast

    report = convert_official_checkpoint(args.checkpoint, args.out, strict=not args.allow_partial, **official_options(args))
    print(report.summary())
    print(f"wrote {args.out}")
    return 0



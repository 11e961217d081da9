"""Inference speed of the depth network: eager PyTorch vs torch.compile vs onnxruntime (CPU).

For each architecture (ResNet-18 + FeatDepth decoder; ResNet-50 + FeatDepth decoder, the paper's
setting), input size (640×192, 1024×320) and batch size (1, 8), measures the latency of one forward
pass of the depth graph exported by ``featdepth export onnx`` (image -> finest disparity and depth)
and reports images/s = batch / latency. Random weights (speed does not depend on them).

- eager: ``torch.inference_mode()``, float32.
- compile: ``torch.compile(model)`` (inductor, default mode); the first call's time (compilation) is
  reported separately; failures are caught and reported.
- onnxruntime: the graph exported with featdepth.inference.onnx (dynamic batch), CPUExecutionProvider,
  ``intra_op_num_threads`` = ``--threads``, graph optimisations on.

Prints a Markdown table and appends it, with the machine, command, date, torch/onnxruntime versions
and thread count, to ``benchmarks/results/inference.md``.

Usage::

    python benchmarks/bench_inference.py                       # everything (slow on small CPUs)
    python benchmarks/bench_inference.py --archs 18 --sizes 640x192 --batches 1 --reps 3
    python benchmarks/bench_inference.py --device cuda --backends eager compile --batches 1 8 32 \
        --record benchmarks/results/inference_gpu.md

On CUDA (``--device cuda``) the eager and compiled models run on the GPU (each timed call ends with a
synchronisation); onnxruntime stays a CPU measurement and is skipped there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from featdepth.inference.onnx import DEFAULT_OPSET, DepthExportWrapper, onnx_export_module
from featdepth.models import DepthNet

RESULTS = Path(__file__).resolve().parent / "results" / "inference.md"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _time_calls(fn, batch_input, warmup: int, reps: int, budget_s: float) -> tuple[float, list[float]]:
    """(first-call seconds, timed seconds per call). Fewer reps when one call exceeds ``budget_s``/reps."""
    t0 = time.perf_counter()
    fn(batch_input)
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn(batch_input)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(batch_input)
        times.append(time.perf_counter() - t0)
        if sum(times) > budget_s:
            break
    return first, times


def bench(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    rows = []
    if args.pairs:
        pairs = [(int(a), sz) for a, sz in (p.split(":") for p in args.pairs)]
    else:
        pairs = [(a, sz) for a in args.archs for sz in args.sizes]
    for arch, size in pairs:
        w, h = (int(v) for v in size.lower().split("x"))
        torch.manual_seed(0)
        net = DepthNet(arch, decoder="featdepth").eval()
        wrapper = DepthExportWrapper(net, 0.1, 100.0).eval().to(device)
        onnx_session = None
        onnx_error = None
        tmpdir = None
        if "onnxruntime" in args.backends and cuda:
            onnx_error = "skipped on CUDA (the onnxruntime row is a CPU measurement)"
        elif "onnxruntime" in args.backends:
            try:
                import onnxruntime as ort

                tmpdir = tempfile.mkdtemp(prefix="featdepth_bench_")
                path = Path(tmpdir) / "depth.onnx"
                t0 = time.perf_counter()
                kind = onnx_export_module(wrapper, (torch.rand(1, 3, h, w),), path, ["image"],
                                          ["disparity", "depth"], DEFAULT_OPSET, args.exporter)
                export_s = time.perf_counter() - t0
                so = ort.SessionOptions()
                so.intra_op_num_threads = args.threads
                so.inter_op_num_threads = 1
                so.log_severity_level = 3
                onnx_session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                print(f"  exported resnet{arch} {w}x{h} with the {kind} exporter in {export_s:.1f}s", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001
                onnx_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
        compiled = None
        compile_error = None
        if "compile" in args.backends:
            try:
                compiled = torch.compile(wrapper)
            except Exception as exc:  # noqa: BLE001
                compile_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
        for batch in args.batches:
            x = torch.rand(batch, 3, h, w, device=device)
            for backend in args.backends:
                row = {"arch": f"ResNet-{arch}", "size": f"{w}x{h}", "batch": batch, "backend": backend}
                print(f"[bench] {row}", file=sys.stderr, flush=True)
                try:
                    if backend == "eager":
                        def fn(inp):
                            with torch.inference_mode():
                                return wrapper(inp)
                    elif backend == "compile":
                        if compiled is None:
                            raise RuntimeError(compile_error or "torch.compile unavailable")

                        def fn(inp):
                            with torch.inference_mode():
                                return compiled(inp)
                    elif backend == "onnxruntime":
                        if onnx_session is None:
                            raise RuntimeError(onnx_error or "onnxruntime unavailable")

                        def fn(inp):
                            return onnx_session.run(None, {"image": inp.numpy()})
                    else:
                        raise ValueError(backend)
                    if cuda:
                        fn = _synchronised(fn, device)
                    first, times = _time_calls(fn, x, args.warmup, args.reps, args.budget)
                    lat = statistics.median(times)
                    row.update(latency_ms=lat * 1000, images_per_s=batch / lat, first_call_s=first, reps=len(times))
                except Exception as exc:  # noqa: BLE001
                    msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
                    row.update(error=msg)
                    if args.verbose:
                        traceback.print_exc()
                rows.append(row)
                print(f"[bench]   -> {_fmt_row(row)}", file=sys.stderr, flush=True)
        onnx_session = compiled = None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return rows


def _synchronised(fn, device):
    """``fn`` followed by a CUDA synchronisation, so that a timed call covers the GPU work."""

    def call(inp):
        out = fn(inp)
        torch.cuda.synchronize(device)
        return out

    return call


def _fmt_row(r: dict) -> str:
    if "error" in r:
        return f"| {r['arch']} | {r['size']} | {r['batch']} | {r['backend']} | failed | | | {r['error']} |"
    note = f"first call {r['first_call_s']:.1f} s" + (" (incl. compilation)" if r["backend"] == "compile" else "")
    return (f"| {r['arch']} | {r['size']} | {r['batch']} | {r['backend']} | {r['latency_ms']:.0f} | "
            f"{r['images_per_s']:.2f} | {r['reps']} | {note} |")


def table(rows: list[dict]) -> str:
    head = ("| network | input (WxH) | batch | backend | latency (ms, median) | images/s | timed reps | notes |\n"
            "|---|---|---|---|---|---|---|---|")
    return "\n".join([head] + [_fmt_row(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, nargs="+", default=[18, 50])
    p.add_argument("--sizes", nargs="+", default=["640x192", "1024x320"])
    p.add_argument("--pairs", nargs="+", metavar="ARCH:WxH",
                   help="explicit (architecture, size) pairs, e.g. 18:640x192 50:1024x320, instead of --archs x --sizes")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--backends", nargs="+", default=["eager", "compile", "onnxruntime"],
                   choices=["eager", "compile", "onnxruntime"])
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--warmup", type=int, default=1, help="untimed calls (the first is always untimed)")
    p.add_argument("--reps", type=int, default=3, help="timed calls (fewer when over --budget seconds)")
    p.add_argument("--budget", type=float, default=30.0, help="stop timing a case after this many seconds")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "legacy"])
    p.add_argument("--note", default="", help="free text recorded with the results (e.g. machine load)")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results/inference.md")
    p.add_argument("--record", default=None, help="append to this file instead of benchmarks/results/inference.md")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (onnxruntime is skipped on CUDA)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)

    start = time.perf_counter()
    rows = bench(args)
    elapsed = time.perf_counter() - start
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"
    gpu = f", GPU {torch.cuda.get_device_name(torch.device(args.device))}" if args.device.startswith("cuda") else ""
    header = (
        f"## {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}: {_cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"{args.threads} thread(s){gpu}\n\n"
        f"- command: `python {shlex.join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:]))}`\n"
        f"- torch {torch.__version__}, onnxruntime {ort_version}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}\n"
        f"- float32, random weights, FeatDepth (CRP) decoder; latency of one call on a batch; images/s = batch / latency\n"
        f"- total benchmark time {elapsed / 60:.1f} min"
        + (f"\n- note: {args.note}" if args.note else "")
        + "\n\n"
    )
    text = header + table(rows) + "\n"
    print(text)
    if not args.no_record:
        results = Path(args.record) if args.record else RESULTS
        results.parent.mkdir(parents=True, exist_ok=True)
        if not results.exists():
            results.write_text("# Inference benchmarks (benchmarks/bench_inference.py)\n\nNewest last.\n\n")
        with results.open("a") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Inference speed of what ``featdepth predict`` and ``featdepth.load`` run: the one ``Model`` type with each
backend, side by side in one process, with the outputs checked against the float32 eager reference.

For each depth decoder (``monodepth2``: the skip decoder of the presets; ``featdepth``: the paper's CRP
decoder), ResNet depth, input size and batch size, it builds a ``Model`` around randomly initialised
networks (speed does not depend on the weights) and times ``Model.disparity`` (the network-size batch path
of ``predict_depth``) with:

- ``eager``: PyTorch, float32, NCHW (the reference);
- ``channels_last``: the same in channels_last memory format;
- ``onnxruntime``: the exported, verified and cached ONNX graph in an onnxruntime CPU session (skipped with
  a note when the ``export`` extra is not installed);
- ``auto``: what ``featdepth predict`` and ``featdepth.load`` choose by default (the ``backend`` column of
  the row says what it resolved to);
- ``bf16``: ``Model(amp="bf16")`` with channels_last (reported, never chosen by ``auto``: see the
  ``max rel. diff`` column against the tolerance in docs/usage.md).

``--peer-monodepth2 PATH`` also times monodepth2's own ``ResnetEncoder`` + ``DepthDecoder`` from a checkout
the user provides (imported at run time with the shims of ``peer_monodepth2.py``; nothing copied), same size
and batch, ``torch.no_grad()``, float32, in the same run.

Latency = median of the timed calls after warm-up (the first call, which exports the ONNX graph or reads it
from the cache, is reported separately). Appends a record (machine, command, date, versions, threads, load
average) to ``benchmarks/results/inference.md``.

Usage::

    python benchmarks/bench_predict.py --quick                          # CI smoke test, seconds
    python benchmarks/bench_predict.py --peer-monodepth2 ~/monodepth2   # the record (R18 640x192, b1 and b8)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = Path(__file__).resolve().parent / "results" / "inference.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import _cpu_name  # noqa: E402 - the sibling script's machine description

BACKENDS = ["eager", "channels_last", "onnxruntime", "auto", "bf16"]


def _time(fn: Callable[[], Any], warmup: int, reps: int, budget_s: float) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    times: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if sum(times) > budget_s:
            break
    return first, times


def build_model(decoder: str, layers: int, height: int, width: int, backend: str, amp: str | None = None):
    """A ``Model`` around random networks of this size (the same seed for every backend: equal weights)."""
    from featdepth.config import load_config
    from featdepth.inference.model import Model, _Networks
    from featdepth.models.stage import StageNetworks

    cfg = load_config(None, ["train.stage=baseline", f"model.depth_decoder={decoder}", f"model.depth_layers={layers}",
                             "model.pose_layers=18", "model.pose_input_size=null", f"data.height={height}",
                             f"data.width={width}"])
    torch.manual_seed(0)
    nets = StageNetworks(cfg, stage="baseline")
    return Model(_Networks(nets.depth_net, nets.pose_net), cfg, stage="baseline", source="random weights",
                 device=torch.device("cpu"), amp=amp, backend=backend)


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.float() - b.float()).abs() / b.float().abs().clamp_min(1e-6)).max())


def bench_case(decoder: str, layers: int, height: int, width: int, batch: int, args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
    reference = None
    for name in args.backends:
        row: dict[str, Any] = {"decoder": decoder, "layers": layers, "size": f"{width}x{height}", "batch": batch,
                               "requested": name}
        try:
            model = build_model(decoder, layers, height, width, "channels_last" if name == "bf16" else name,
                                amp="bf16" if name == "bf16" else None)
            row["backend"] = model.backend + ("+bf16" if name == "bf16" else "")
            with model.evaluating(), torch.inference_mode():
                first, times = _time(lambda: model.disparity(images), args.warmup, args.reps, args.budget)
                out = model.disparity(images)
            if reference is None and name == "eager":
                reference = out
            row.update(first_s=first, ms=1000 * statistics.median(times), reps=len(times),
                       diff=_rel_diff(out, reference) if reference is not None else None)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run here is reported, not fatal
            row["error"] = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        rows.append(row)
        if args.verbose:
            print(row, file=sys.stderr, flush=True)
    if args.peer_monodepth2 and decoder == "monodepth2":
        rows.append(bench_peer(args.peer_monodepth2, layers, height, width, images, args))
    return rows


def bench_peer(path: str, layers: int, height: int, width: int, images: torch.Tensor, args: argparse.Namespace) -> dict:
    """monodepth2's own encoder + depth decoder from ``path`` (no_grad, float32, NCHW)."""
    row: dict[str, Any] = {"decoder": "monodepth2 (its own code)", "layers": layers, "size": f"{width}x{height}",
                           "batch": images.shape[0], "requested": "peer", "backend": "eager (monodepth2)"}
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import peer_monodepth2

        mods, _ = peer_monodepth2.import_peer(path)
        networks = mods["networks"]
        torch.manual_seed(0)
        encoder = networks.ResnetEncoder(layers, False).eval()
        decoder = networks.DepthDecoder(encoder.num_ch_enc, range(4)).eval()

        def run():
            with torch.no_grad():
                return decoder(encoder(images))[("disp", 0)]

        first, times = _time(run, args.warmup, args.reps, args.budget)
        row.update(first_s=first, ms=1000 * statistics.median(times), reps=len(times), diff=None)
    except Exception as exc:  # noqa: BLE001
        row["error"] = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return row


def table(rows: list[dict]) -> str:
    lines = ["| decoder | network | input (WxH) | batch | requested | ran as | latency ms (median) | images/s | "
             "first call s | reps | max rel. diff vs eager |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['decoder']} | ResNet-{r['layers']} | {r['size']} | {r['batch']} | {r['requested']} |"
        if "error" in r:
            lines.append(head + f" {r.get('backend', '–')} | failed: {r['error']} | | | | |")
            continue
        diff = "–" if r.get("diff") is None else f"{r['diff']:.1e}"
        lines.append(head + f" {r['backend']} | {r['ms']:.1f} | {1000 * r['batch'] / r['ms']:.1f} | {r['first_s']:.2f} | "
                     f"{r['reps']} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python benchmarks/bench_predict.py --quick\n"
                                       "  python benchmarks/bench_predict.py --peer-monodepth2 ~/monodepth2")
    p.add_argument("--decoders", nargs="+", default=["monodepth2", "featdepth"], choices=["monodepth2", "featdepth"])
    p.add_argument("--layers", type=int, default=18, choices=[18, 34, 50])
    p.add_argument("--sizes", nargs="+", default=["640x192"], help="WxH, multiples of 32")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--warmup", type=int, default=2, help="untimed calls (the first is always untimed)")
    p.add_argument("--reps", type=int, default=20, help="timed calls (fewer when over --budget seconds)")
    p.add_argument("--budget", type=float, default=20.0, help="stop timing a case after this many seconds")
    p.add_argument("--peer-monodepth2", metavar="PATH", help="a monodepth2 checkout to time side by side")
    p.add_argument("--quick", action="store_true", help="tiny size, few calls, no record (CI smoke test)")
    p.add_argument("--note", default="", help="free text recorded with the results (e.g. machine load)")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--record", default=None, help="append to this file instead of benchmarks/results/inference.md")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.reps, args.warmup, args.no_record = ["128x64"], [1], 2, 1, True
    torch.set_num_threads(args.threads)
    import tempfile

    cache = tempfile.TemporaryDirectory(prefix="featdepth-bench-onnx-")  # random weights: keep them out of the user's cache
    os.environ.setdefault("FEATDEPTH_CACHE", cache.name)
    t0 = time.perf_counter()
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows: list[dict] = []
    for size in args.sizes:
        w, h = (int(x) for x in size.lower().split("x"))
        for decoder in args.decoders:
            for batch in args.batches:
                rows.extend(bench_case(decoder, args.layers, h, w, batch, args))
    text = table(rows)
    print(text)
    if not args.no_record:
        try:
            import onnxruntime

            ort = onnxruntime.__version__
        except ImportError:
            ort = "not installed"
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "python benchmarks/bench_predict.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        rec = [f"\n## {stamp}: `Model` backends (what `featdepth predict` runs), {_cpu_name()}, "
               f"{os.cpu_count()} logical CPUs, {args.threads} thread(s)\n",
               f"- command: `{cmd}`",
               f"- torch {torch.__version__}, onnxruntime {ort}, Python {platform.python_version()}",
               f"- load average at the start: {' '.join(f'{x:.2f}' for x in load0) if load0 else '?'}",
               "- random weights; `Model.disparity` on a batch at the network size; latency = median of the timed "
               "calls; images/s = batch / latency; *max rel. diff* = largest relative difference of the "
               "disparity from the float32 eager output of the same weights",
               f"- total benchmark time {(time.perf_counter() - t0) / 60:.1f} min"]
        if args.note:
            rec.append(f"- note: {args.note}")
        path = Path(args.record) if args.record else RESULTS
        with path.open("a", encoding="utf-8") as f:
            f.write("\n".join(rec) + "\n\n" + text + "\n")
        print(f"appended to {path}", file=sys.stderr)
    return 0 if all("error" not in r for r in rows if r["requested"] != "onnxruntime") else 1


if __name__ == "__main__":
    raise SystemExit(main())

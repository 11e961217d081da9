"""The Gradio page of ``featdepth app``: layout and event wiring only (the work is in :mod:`featdepth.app.handlers`).

Tabs: **Image** (upload or pick an example frame; input | colour-mapped depth slider, rotatable point cloud,
downloads), **Video** (a video or a zip of frames; side-by-side depth video and PoseNet trajectory) and
**Checkpoint** (what the model is; load another one).

Named endpoints for ``gradio_client`` (see the README): ``/predict_image`` (image file, fx, fy, cx, cy, camera
height -> colour depth PNG, depth ``.npy``, point cloud ``.ply``, summary dict), ``/predict_video`` (video or
zip -> side-by-side MP4, trajectory plot, files, summary text) and ``/checkpoint_info`` (-> dict).

Every failure reaches the page as a ``gr.Error`` with a plain message, never a stack trace; the server keeps
serving.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from featdepth.app.handlers import (
    INSTALL_HINT,
    AppError,
    AppState,
    checkpoint_info,
    checkpoint_markdown,
    example_frames,
    example_intrinsics,
    example_sequence_zip,
    load_model,
    predict_image,
    predict_video,
)
from featdepth.tasks.predict import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = ["require_gradio", "build_app", "launch", "EXAMPLE_CAMERA_HEIGHT"]

log = logging.getLogger("featdepth.app")

#: Camera height of the synthetic example frames (metres above the road).
EXAMPLE_CAMERA_HEIGHT = 1.65

#: The initial view of the point cloud: ``(alpha, beta, radius)`` of the viewer's orbit camera in degrees
#: (alpha 90: from behind the real camera, looking along its view; beta 75: slightly from above).
VIEW_CAMERA = (90, 75, None)


def require_gradio() -> Any:
    """Import Gradio (analytics off), or raise :class:`AppError` naming the ``app`` extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr  # lazy: optional dependency (the `app` extra); the package imports without it
    except ImportError as exc:
        raise AppError(f"the web app needs Gradio: {INSTALL_HINT}") from exc
    return gr


def _header(state: AppState) -> str:
    info = checkpoint_info(state.model)
    pose = "with PoseNet" if state.model.has_pose else "no PoseNet"
    return (f"## featdepth: depth, point clouds and trajectories\n"
            f"Model `{info['checkpoint']}`: {info['depth_network']}, {pose}, trained at {info['training_size']}; "
            f"depth {info['depth_kind']}.")


def build_app(state: AppState) -> Any:
    """The page (a ``gr.Blocks``) around ``state``; ``launch()`` it or use :func:`launch`."""
    gr = require_gradio()
    frames = example_frames(state.examples_dir)
    sequence = example_sequence_zip(state.examples_dir)

    def guarded(what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except AppError as exc:
            raise gr.Error(str(exc), title="Cannot do that", print_exception=False) from None
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - the page shows a sentence, the server log the traceback
            log.exception("featdepth app: %s failed", what)
            raise gr.Error(f"{what} failed: {exc}", title="Something went wrong", print_exception=False) from None

    def image_result(image, fx, fy, cx, cy, camera_height, height_from):
        def work():
            with state.lock:
                return predict_image(state.model, image, state.request_dir("image"), fx=fx, fy=fy, cx=cx, cy=cy,
                                     camera_height=camera_height, height_from=height_from)

        result = guarded("the depth of this image", work)
        for note in result.notes:
            if note.startswith("no metric scale"):
                gr.Warning(note)
        return result

    def run_image(image, fx, fy, cx, cy, camera_height, height_from="plane"):
        r = image_result(image, fx, fy, cx, cy, camera_height, height_from)
        return (r.image, r.colour), str(r.glb), [str(p) for p in r.downloads], r.markdown()

    def api_image(image, fx, fy, cx, cy, camera_height, height_from="plane"):
        r = image_result(image, fx, fy, cx, cy, camera_height, height_from)
        return str(r.colour_png), str(r.depth_npy), str(r.ply), r.summary

    def run_video(upload, progress=gr.Progress(track_tqdm=True)):
        def work():
            with state.lock:
                return predict_video(state.model, upload, state.request_dir("video"), max_frames=state.max_frames,
                                     progress=lambda f, d: progress(f, desc=d))

        r = guarded("the depth of this video", work)
        plot = str(r.trajectory_plot) if r.trajectory_plot else None
        return str(r.video) if r.video else None, plot, [str(p) for p in r.files], r.markdown()

    def load_checkpoint(upload):
        def work():
            if not upload:
                raise AppError("no checkpoint file: upload a featdepth checkpoint (.pt) or an official FeatDepth .pth")
            model = load_model(upload, device=str(state.model.device))
            with state.lock:
                state.model = model
            return checkpoint_markdown(model), _header(state)

        return guarded("loading the checkpoint", work)

    def info():
        with state.lock:
            return checkpoint_info(state.model)

    with gr.Blocks(title="featdepth", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        header = gr.Markdown(_header(state), elem_id="header")
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column(scale=1):
                    image_in = gr.File(label="Image (PNG, JPEG, ...)", type="filepath", elem_id="image-input")
                    with gr.Accordion("Camera: intrinsics and height (optional)", open=False):
                        gr.Markdown("Intrinsics in pixels of this image: all four, or all 0 for the checkpoint's "
                                    "(else KITTI-like ones). The camera height above the ground (0: none) gives "
                                    "depth in metres, measured from the fitted ground plane (any camera "
                                    "orientation) or, for a camera mounted level like KITTI's, from the "
                                    "ground points below it (often more accurate on predicted depth).")
                        with gr.Row():
                            fx = gr.Number(label="fx", elem_id="fx", min_width=60)
                            fy = gr.Number(label="fy", elem_id="fy", min_width=60)
                            cx = gr.Number(label="cx", elem_id="cx", min_width=60)
                            cy = gr.Number(label="cy", elem_id="cy", min_width=60)
                        camera_height = gr.Number(label="camera height (m)", elem_id="camera-height")
                        height_from = gr.Radio(["plane", "level"], value="plane", label="height measured from",
                                               elem_id="height-from")
                    run_btn = gr.Button("Estimate depth", variant="primary", elem_id="image-run")
                    gr.Examples(
                        # the synthetic street camera is mounted level, as KITTI's
                        examples=[[str(p), *[round(v, 2) for v in example_intrinsics(p)], EXAMPLE_CAMERA_HEIGHT, "level"]
                                  for p in frames],
                        inputs=[image_in, fx, fy, cx, cy, camera_height, height_from],
                        label="Example frames (rendered by featdepth's own synthetic street generator)",
                    )
                with gr.Column(scale=2):
                    slider = gr.ImageSlider(label="input | depth (drag the handle)", type="numpy", format="png",
                                            elem_id="depth-slider", max_height=420)
                    view = gr.Model3D(label="point cloud (drag to rotate, scroll to zoom)", elem_id="points-3d",
                                      clear_color=(0.08, 0.08, 0.1, 1.0), camera_position=VIEW_CAMERA, height=420)
                    image_files = gr.File(label="downloads: depth .npy, 16-bit PNG (depth × 256), .ply, colour PNG",
                                          file_count="multiple", elem_id="image-downloads")
                    image_info = gr.Markdown(elem_id="image-info")
            # The programmatic endpoint: hidden outputs, the same handler.
            api_colour = gr.Image(visible=False, type="filepath", format="png", label="colour depth")
            api_npy = gr.File(visible=False, label="depth npy")
            api_ply = gr.File(visible=False, label="point cloud ply")
            api_summary = gr.JSON(visible=False, label="summary")
            api_btn = gr.Button(visible=False)
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column(scale=1):
                    video_in = gr.File(label=f"Video ({', '.join(VIDEO_EXTENSIONS[:4])}, ...) or .zip of frames "
                                             f"({', '.join(IMAGE_EXTENSIONS[:3])}, ...); at most {state.max_frames} frames",
                                       type="filepath", elem_id="video-input")
                    video_btn = gr.Button("Estimate depth and trajectory", variant="primary", elem_id="video-run")
                    gr.Examples(examples=[[str(sequence)]], inputs=[video_in],
                                label="Example: 30 synthetic street frames (zip)")
                with gr.Column(scale=2):
                    video_out = gr.Video(label="input | depth", elem_id="depth-video")
                    trajectory = gr.Image(label="camera trajectory from PoseNet (top view)", type="filepath",
                                          elem_id="trajectory")
                    video_files = gr.File(label="downloads: trajectory (KITTI, TUM), summaries", file_count="multiple")
                    video_info = gr.Markdown(elem_id="video-info", label="summary")
        with gr.Tab("Checkpoint"):
            ckpt_md = gr.Markdown(checkpoint_markdown(state.model), elem_id="checkpoint-info")
            ckpt_in = gr.File(label="load another checkpoint (.pt, official .pth)", type="filepath",
                              elem_id="checkpoint-upload")
            ckpt_btn = gr.Button("Load", elem_id="checkpoint-load")
            api_info = gr.JSON(visible=False, label="checkpoint")
            info_btn = gr.Button(visible=False)

        inputs = [image_in, fx, fy, cx, cy, camera_height, height_from]
        run_btn.click(run_image, inputs, [slider, view, image_files, image_info], api_visibility="private")
        api_btn.click(api_image, inputs, [api_colour, api_npy, api_ply, api_summary], api_name="predict_image")
        video_btn.click(run_video, [video_in], [video_out, trajectory, video_files, video_info],
                        api_name="predict_video")
        ckpt_btn.click(load_checkpoint, [ckpt_in], [ckpt_md, header], api_visibility="private")
        info_btn.click(info, None, [api_info], api_name="checkpoint_info")
    return demo


def launch(state: AppState, host: str = "127.0.0.1", port: int = 7860, share: bool = False, *,
           block: bool = True) -> Any:
    """Build the page and serve it on ``host:port`` (``share``: also through Gradio's public tunnel).

    Raises:
        AppError: Gradio missing, or the port cannot be used (the message names it).
    """
    demo = build_app(state)
    demo.queue(default_concurrency_limit=1)
    try:
        demo.launch(server_name=host, server_port=int(port), share=share, show_error=True, ssr_mode=False,
                    allowed_paths=[str(state.work_dir), str(state.examples_dir)], prevent_thread_lock=not block,
                    footer_links=["api", "gradio"])
    except OSError as exc:
        raise AppError(f"cannot serve on {host}:{port} ({exc}); pass another --port") from exc
    return demo


def default_work_dir() -> Path:
    """A fresh temporary folder for the page's outputs."""
    return Path(tempfile.mkdtemp(prefix="featdepth-app-"))

"""featdepth: self-supervised monocular depth and ego-motion with the feature-metric loss.

A re-implementation of FeatDepth (Shu et al., ECCV 2020). See README.md, docs/method.md and docs/design.md.

The package's one entry point for users is :func:`load`::

    import featdepth
    model = featdepth.load("demo-output/checkpoint.pt")
    depth = model.predict_depth("frame.png")
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load", "Model"]


def __getattr__(name: str):
    # Lazy: `import featdepth` stays light (no torch import) for the command line's --version and --help.
    if name == "load":
        from featdepth.inference.loading import load

        return load
    if name in ("Model", "DepthModel"):
        from featdepth.inference import model

        return getattr(model, name)
    raise AttributeError(f"module 'featdepth' has no attribute {name!r}")

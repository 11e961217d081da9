"""featdepth: self-supervised monocular depth and ego-motion with the feature-metric loss.

A re-implementation of FeatDepth (Shu et al., ECCV 2020). See README.md and docs/design.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]


def load(checkpoint, device="auto", amp=None, **kwargs):  # noqa: D103 - documented in featdepth.api.load
    from featdepth.api import load as _load

    return _load(checkpoint, device=device, amp=amp, **kwargs)

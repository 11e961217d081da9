"""featdepth: self-supervised monocular depth and ego-motion with the feature-metric loss.

A re-implementation of FeatDepth (Shu et al., ECCV 2020). See README.md and docs/design.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

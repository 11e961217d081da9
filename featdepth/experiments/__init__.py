"""The paper's ablations, measured with our own code (issue #9).

- :mod:`featdepth.experiments.runner`: trains the variants (baseline, feature-metric loss with
  FeatureNets trained with reconstruction only / + discriminative / + discriminative + convergent,
  joint) with the same data, budget and seeds on the synthetic scenes, evaluates depth overall and per
  region and the 5-frame ATE, and writes a report (``featdepth experiment run``).
- :mod:`featdepth.experiments.landscape`: photometric vs feature-metric error as the ground-truth depth
  is scaled and the ground-truth pose perturbed, per region.
- :mod:`featdepth.experiments.feature_stats`: first/second-order feature gradients on textureless vs
  textured pixels, PCA pictures.
- :mod:`featdepth.experiments.realdata`: the same comparison on the tiny real KITTI clips.
- :mod:`featdepth.experiments.stats`: paired per-seed differences against the baseline with t and
  bootstrap confidence intervals (the ``decide`` preset's statistics).
- :mod:`featdepth.experiments.report`: Markdown tables and PNG figures.

Nothing is imported eagerly: ``import featdepth.experiments`` is cheap.
"""

__all__ = ["runner", "landscape", "feature_stats", "realdata", "stats", "report"]

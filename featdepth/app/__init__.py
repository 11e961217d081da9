"""``featdepth app``: a local web page to look at depth, point clouds and trajectories.

- :mod:`featdepth.app.handlers`: the work, as plain functions that take a :class:`~featdepth.inference.model.Model`
  and files and return arrays and files (no web server, no Gradio: testable on their own);
- :mod:`featdepth.app.ui`: the Gradio page around them (needs the ``app`` extra: ``pip install "featdepth[app]"``).

The app is a top layer like :mod:`featdepth.cli`: it may import every layer below it.
"""

"""Inference: the one trained-model type (:class:`~featdepth.inference.model.Model`), the one loader
(:func:`~featdepth.inference.loading.load`), official checkpoint formats, point clouds and ONNX export."""

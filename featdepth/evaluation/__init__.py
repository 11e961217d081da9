"""featdepth.evaluation"""

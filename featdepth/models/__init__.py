"""featdepth.models"""

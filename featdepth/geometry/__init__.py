"""featdepth.geometry"""

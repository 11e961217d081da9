"""featdepth.losses"""

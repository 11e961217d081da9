"""featdepth.engine"""

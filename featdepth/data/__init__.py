"""featdepth.data"""

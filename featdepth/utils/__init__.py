"""Utilities with no featdepth dependency above the config: files, devices, constants."""

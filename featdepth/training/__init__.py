"""Training: the system (networks + objective), one step, the thin loop, checkpoints, distributed runs,
schedule, logging, and online refinement (test-time training)."""

"""Verifier training: data generation, labels, stage-1 alignment, stage-2 fine-tuning, evaluation (run with -m)."""

"""Reusable pieces of every training run: distributed helpers, checkpoints, seeds, metric
writers. Kept generic: nothing here knows about ImageNet or HICO-DET."""

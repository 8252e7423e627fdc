"""Training and inference of the VSGNet heads on cached HICO-DET features."""

"""HOI detection on HICO-DET with Spatially-Aware Context (SAC) backbones.

Reproduces the HOI experiment of Ruan et al., "Spatially-Aware Context Neural Networks",
IEEE TIP 2021: VSGNet interaction heads on a frozen, ImageNet-pretrained SAC-ResNet.
"""

__version__ = "0.1.0"

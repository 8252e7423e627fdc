"""ImageNet classification training of the attention ResNets (SAC paper, Sec. IV-B): the
from-scratch recipe and the cheap fine-tuning recipe from torchvision's ResNet weights."""

"""COCO detection and instance segmentation with the attention ResNets (the paper's Sec. IV-A,
Tables I-VII), on Detectron2.

One module per job:

- :mod:`hoi.detection.backbone`: the attention ResNet as a Detectron2 backbone (+ FPN, + P6/P7),
  registered in Detectron2's ``BACKBONE_REGISTRY``;
- :mod:`hoi.detection.config`: the ``MODEL.HOI_BACKBONE`` config node and the detector recipes
  (``DETECTORS``: model-zoo base + ``configs/coco/*.yaml``);
- :mod:`hoi.detection.paper`: the paper's parameter / FLOP / AP numbers;
- :mod:`hoi.detection.complexity`: parameters and FLOPs of a whole detector, as mmdetection
  counts them;
- :mod:`hoi.detection.coco_synth`: a tiny synthetic COCO-format instances set (CPU smoke runs);
- :mod:`hoi.detection.train`: Detectron2's trainer with COCO evaluation, datasets from files.

Every use of Detectron2 goes through :mod:`hoi.detectron2_compat`.
"""

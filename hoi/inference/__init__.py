"""Inference of a trained run: pair scores to HOI rows (``scoring``), ``hoi test`` over a split
(``test_split``) and ``hoi predict`` on new images (``predict_images``)."""

"""Model input: the human-object pairs of an image, their labels, the dataset over a split's
cached files and its batches (``collate``), the loaders of training and inference."""

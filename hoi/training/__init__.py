"""HOI training: the interaction heads trained on cached HICO-DET features (``hoi train``)."""

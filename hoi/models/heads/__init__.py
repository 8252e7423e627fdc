"""Interaction heads on cached backbone maps, chosen by ``model.name``."""

"""Checkpoints and formats: the Hub layout, timm's layout and its converter, and the models shipped in the package."""

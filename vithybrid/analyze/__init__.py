"""Explain a whole dataset with ViT-Hybrid: `python -m vithybrid.analyze SOURCE --out OUT` (see __main__)."""

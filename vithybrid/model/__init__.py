"""The model: configuration, BiT backbone, ViT-Hybrid modules and the image processor."""

"""Training: the shapes generator, datasets and the training loop (`python -m vithybrid.training.train`)."""

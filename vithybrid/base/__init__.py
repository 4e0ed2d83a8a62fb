"""What transformers' base classes give its models, in our own small form: outputs that are both
dataclasses and ordered dicts (ModelOutput), a config with the common keys and the save/load/dict/json
methods (PretrainedConfig), from_pretrained / save_pretrained and the model-wide helpers
(PreTrainedModel), and an image processor base with BatchFeature and the image transforms. It knows no
concrete model or checkpoint format: from_pretrained reads through the reader that vithybrid.checkpoints
installs (checkpoint.py)."""

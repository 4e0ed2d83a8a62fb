"""Checkpoints and formats: the Hub layout, timm's layout and its converter, and the models shipped in the
package. Importing it installs `reader` as the one every from_pretrained reads through (vithybrid imports it)."""

from ..base.checkpoint import install_reader
from . import reader

install_reader(reader)

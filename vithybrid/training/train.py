"""Train or fine-tune a ViT-Hybrid image classifier: `python -m vithybrid.training.train --help`.

The model comes from an architecture (a preset name or a config.json) with random weights, or from
any checkpoint (a Hub id, a folder, or "shapes", the model shipped in the package). The data comes
from the shapes generator (vithybrid.training.shapes) or from an image folder with one subfolder per class.
Training uses AdamW with linear warm-up and cosine decay, writes a resumable checkpoint every epoch,
and leaves a Hub-layout folder (config.json, model.safetensors, preprocessor_config.json) that
`ViTHybridForImageClassification.from_pretrained` and the app load. Bad input ends with a message
that names the file or folder at fault and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import shapes
from ..model.config import ViTHybridConfig
from .datasets import (SHAPES_AUGMENTATION, Augmentation, DataError, FolderDataset, ImageDataset, ShapesDataset,
                       scan_folder, split_files)
from ..atomic import replacing
from ..checkpoints.hub import CheckpointError
from ..model.modeling import ViTHybridForImageClassification
from ..loading import load_pretrained
from ..model.processing import ViTHybridImageProcessor, default_processor
from ..optimize import keep_freed_memory

# Architectures to train from scratch. "shapes" is the shipped model's; "tiny" is for quick checks.
PRESETS: dict[str, dict[str, Any]] = {
    "shapes": dict(
        image_size=64, patch_size=1, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=256, backbone_featmap_shape=[1, 128, 8, 8],
        backbone_config=dict(model_type="bit", layer_type="bottleneck", global_padding="same",
                             embedding_dynamic_padding=True, depths=[1, 1], hidden_sizes=[64, 128],
                             embedding_size=32, num_groups=8, out_features=["stage2"])),
    "tiny": dict(
        image_size=32, patch_size=1, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, backbone_featmap_shape=[1, 32, 8, 8],
        backbone_config=dict(model_type="bit", layer_type="bottleneck", global_padding="same",
                             embedding_dynamic_padding=True, depths=[1], hidden_sizes=[32], embedding_size=16,
                             num_groups=4, out_features=["stage1"])),
}
EXAMPLES = """examples:
  python -m vithybrid.training.train --config shapes --shapes --epochs 45 --train-size 8192 --output runs/shapes
  python -m vithybrid.training.train --from-pretrained shapes --data-dir my_images --epochs 5 --output runs/mine
  python -m vithybrid.training.train --from-pretrained shapes --data-dir my_images --epochs 5 --output runs/mine --resume
(the first is how the shipped model was trained: see vithybrid/checkpoints/models/shapes/README.md)"""
CHECKPOINT_NAME = "last.pt"
STATE_NAME = "trainer_state.json"


class TrainingError(Exception):
    """A problem with the command's model, config or checkpoint; the message says what to do."""


def available_cpus() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe(metrics: dict[str, float], epochs: int) -> str:
    """One line per epoch: 'epoch 3/10  train loss 0.4120 acc 85.31%  val loss ... acc ...  (66 s)'."""
    line = (f"epoch {metrics['epoch']}/{epochs}  "
            f"train loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.2%}")
    if "val_loss" in metrics:
        line += f"  val loss {metrics['val_loss']:.4f} acc {metrics['val_accuracy']:.2%}"
    return line + f"  ({metrics['seconds']:.0f} s)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vithybrid.training.train", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train or fine-tune a ViT-Hybrid image classifier on the shapes generator or an image folder.")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config", help=f"train from random weights: a preset ({', '.join(PRESETS)}) or a config.json")
    model.add_argument("--from-pretrained", metavar="MODEL",
                       help="fine-tune a checkpoint: Hub id, folder, or 'shapes' (the shipped model)")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--shapes", action="store_true", help="train on the shapes generator (vithybrid.training.shapes)")
    data.add_argument("--data-dir", type=Path, help="train on an image folder: one subfolder of images per class")
    parser.add_argument("--output", type=Path, required=True, help="folder for the trained model (Hub layout)")
    parser.add_argument("--checkpoint-dir", type=Path, help="where the per-epoch checkpoint goes [OUTPUT/checkpoints]")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --checkpoint-dir (model and processor come from it)")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the data [%(default)s]")
    parser.add_argument("--batch-size", type=int, default=32, help="[%(default)s]")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate [%(default)s]")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="AdamW's [%(default)s]")
    parser.add_argument("--warmup", type=float, default=0.05, help="share of the steps spent warming up [%(default)s]")
    parser.add_argument("--seed", type=int, default=0, help="initialization, data and order [%(default)s]")
    parser.add_argument("--train-size", type=int, default=10000,
                        help="generated training images per epoch [%(default)s]")
    parser.add_argument("--val-size", type=int, default=1000, help="generated validation images [%(default)s]")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of each class held out for validation [%(default)s]")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="flip, colour jitter, blur, JPEG; random crops of folder images [on]")
    parser.add_argument("--threads", type=int, default=available_cpus(),
                        help="torch CPU threads [%(default)s: this machine's cores]")
    parser.add_argument("--workers", type=int, default=0,
                        help="data-loading processes; 0 loads in the main one [%(default)s]")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="a progress bar per epoch [on]")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.train_size < 1 or args.val_size < 0:
        parser.error("--epochs, --batch-size and --train-size must be positive, --val-size not negative")
    if not 0 <= args.val_fraction < 1 or not 0 <= args.warmup < 1:
        parser.error("--val-fraction and --warmup must be in [0, 1)")
    args.checkpoint_dir = args.checkpoint_dir or args.output / "checkpoints"
    return args


def architecture(name_or_path: str) -> ViTHybridConfig:
    """A preset's config, or one read from a config.json."""
    if name_or_path in PRESETS:
        return ViTHybridConfig(**PRESETS[name_or_path])
    path = Path(name_or_path)
    if not path.is_file():
        raise TrainingError(f"--config {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a "
                            f"config.json file.")
    try:
        config = ViTHybridConfig.from_json_file(path)
        config.validate()  # what building the model checks, said before training starts
        return config
    except (OSError, ValueError, TypeError) as error:
        raise TrainingError(f"{path} is not a valid ViT-Hybrid config: {error}") from error


def with_labels(model: ViTHybridForImageClassification, labels: list[str]) -> ViTHybridForImageClassification:
    """The model with a classifier for `labels`: kept if the checkpoint has exactly these, else a new one."""
    if list(model.config.id2label.values()) != labels:
        model.classifier = torch.nn.Linear(model.config.hidden_size, len(labels))
        model.init_weights(model.classifier)
        model.config.id2label = dict(enumerate(labels))
    return model


def build_model(args: argparse.Namespace, labels: list[str]) -> tuple[ViTHybridForImageClassification,
                                                                     ViTHybridImageProcessor]:
    """The model to train and its image processor, from --config or --from-pretrained."""
    if args.config:
        config = architecture(args.config)
        config.id2label = dict(enumerate(labels))
        return ViTHybridForImageClassification(config), default_processor(config.image_size)
    model, processor = load_pretrained(args.from_pretrained, attn_implementation="sdpa")
    return with_labels(model, labels), processor


def class_names(args: argparse.Namespace) -> tuple[list[str], list[list[Path]]]:
    """Class names and, for --data-dir, each class's files (validated)."""
    if args.shapes:
        return list(shapes.CLASSES), []
    return scan_folder(args.data_dir)


def datasets(args: argparse.Namespace, files: list[list[Path]], processor: ViTHybridImageProcessor,
             image_size: int) -> tuple[ImageDataset, ImageDataset | None]:
    """(train, validation) datasets: the first --val-size generated images validate, training reads on from there."""
    if args.shapes:
        augment = Augmentation(image_size, **SHAPES_AUGMENTATION) if args.augment else None
        train = ShapesDataset(args.train_size, args.seed, args.val_size, image_size, processor, augment,
                              fresh_each_epoch=True)
        val = ShapesDataset(args.val_size, args.seed, 0, image_size, processor) if args.val_size else None
        return train, val
    train_files, val_files = split_files(files, args.val_fraction, args.seed)
    augment = Augmentation(image_size) if args.augment else None
    return (FolderDataset(train_files, args.seed, processor, augment),
            FolderDataset(val_files, args.seed, processor) if val_files else None)


def optimizer_for(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norm weights (all 1-d parameters) and position embeddings."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim >= 2 and "position_embeddings" not in name else no_decay).append(parameter)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the peak learning rate, then cosine decay to 0 at `total_steps`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epoch(model: ViTHybridForImageClassification, loader: DataLoader, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, description: str, progress: bool) -> dict[str, float]:
    """One pass over `loader`, stepping the schedule per batch; mean loss and accuracy (of augmented images)."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=description, unit="batch", disable=not progress, dynamic_ncols=True)
    for pixel_values, labels in bar:
        out = model(pixel_values, labels=labels)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        total_loss += out.loss.item() * len(labels)
        correct += (out.logits.argmax(-1) == labels).sum().item()
        seen += len(labels)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.2%}",
                        lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return {"train_loss": total_loss / seen, "train_accuracy": correct / seen}


@torch.no_grad()
def evaluate(model: ViTHybridForImageClassification, loader: DataLoader) -> dict[str, float]:
    """Mean loss and accuracy on the validation set, in eval mode."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for pixel_values, labels in loader:
        out = model(pixel_values, labels=labels)
        total_loss += out.loss.item() * len(labels)
        correct += (out.logits.argmax(-1) == labels).sum().item()
        seen += len(labels)
    return {"val_loss": total_loss / seen, "val_accuracy": correct / seen}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write the training state atomically, so an interrupted save never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as file:
        torch.save(state, file)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The training state of an earlier run (tensors and plain values only: weights_only)."""
    if not path.is_file():
        raise TrainingError(f"--resume: there is no checkpoint at {path}. Start without --resume, or point "
                            f"--checkpoint-dir at the folder of the run to continue.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a damaged file
        raise TrainingError(f"--resume: {path} cannot be read ({error}). Delete it to start over.") from error


def save_model(output: Path, model: ViTHybridForImageClassification, processor: ViTHybridImageProcessor,
               trainer_state: dict[str, Any]) -> None:
    """The Hub-layout folder, plus trainer_state.json (command, per-epoch metrics, time)."""
    model.save_pretrained(output)
    processor.save_pretrained(output)
    (output / STATE_NAME).write_text(json.dumps(trainer_state, indent=2) + "\n", encoding="utf-8")


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Train as `args` say; returns the trainer state (command, per-epoch metrics, seconds)."""
    torch.set_num_threads(max(1, args.threads))
    labels, files = class_names(args)
    checkpoint = load_checkpoint(args.checkpoint_dir / CHECKPOINT_NAME) if args.resume else None
    torch.manual_seed(args.seed)
    if checkpoint is None:
        model, processor = build_model(args, labels)
        history, elapsed, start_epoch = [], 0.0, 0
    else:
        model = ViTHybridForImageClassification(ViTHybridConfig.from_dict(checkpoint["config"]))
        model.load_state_dict(checkpoint["model"])
        processor = ViTHybridImageProcessor(**checkpoint["processor"])
        history, elapsed, start_epoch = checkpoint["history"], checkpoint["elapsed"], checkpoint["epoch"]
        if list(model.config.id2label.values()) != labels:
            raise TrainingError(f"--resume: the checkpoint's classes {list(model.config.id2label.values())} are not "
                                f"the data's {labels}. Resume with the data it was trained on.")

    train_set, val_set = datasets(args, files, processor, model.config.image_size)
    loader_options = dict(batch_size=args.batch_size, num_workers=args.workers, persistent_workers=args.workers > 0)
    generator = torch.Generator()
    train_loader = DataLoader(train_set, shuffle=True, generator=generator, **loader_options)
    val_loader = DataLoader(val_set, **loader_options) if val_set is not None else None
    total_steps = args.epochs * len(train_loader)
    optimizer = optimizer_for(model, args.lr, args.weight_decay)
    scheduler = warmup_cosine(optimizer, max(1, round(args.warmup * total_steps)), total_steps)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])

    trainer_state = {"command": command, "epochs": history, "seconds": elapsed}
    for epoch in range(start_epoch, args.epochs):
        began = time.perf_counter()
        generator.manual_seed(args.seed * 100_003 + epoch)  # the same order on a resumed run
        train_set.set_epoch(epoch)
        metrics = {"epoch": epoch + 1,
                   **train_epoch(model, train_loader, optimizer, scheduler, f"epoch {epoch + 1}/{args.epochs}",
                                 args.progress)}
        if val_loader is not None:
            metrics.update(evaluate(model, val_loader))
        metrics["seconds"] = round(time.perf_counter() - began, 1)
        history.append(metrics)
        elapsed += metrics["seconds"]
        trainer_state.update(epochs=history, seconds=round(elapsed, 1))
        print(describe(metrics, args.epochs), flush=True)
        save_model(args.output, model, processor, trainer_state)
        save_checkpoint(args.checkpoint_dir / CHECKPOINT_NAME, {
            "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "config": model.config.to_dict(), "processor": processor.to_dict(),
            "history": history, "elapsed": elapsed})
    return trainer_state


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 when the model is saved, 1 (with a message, no traceback) for bad input."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        state = run(args, shlex.join(["python", "-m", "vithybrid.training.train", *argv]))
    except (DataError, CheckpointError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Saved the model to {args.output} ({state['seconds']:.0f} s of training).")
    return 0


if __name__ == "__main__":
    keep_freed_memory()  # this process's choice, as an entry point (see vithybrid.optimize)
    sys.exit(main())

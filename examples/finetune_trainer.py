"""Fine-tune ViT-Hybrid with transformers 5's Trainer on an image folder, as transformers' own
image-classification example (run_image_classification.py) does: the `datasets` "imagefolder" loader,
random-resized-crop and flip for training, the image processor's own pixels for evaluation, accuracy,
an evaluation and a checkpoint each epoch, and the best checkpoint kept at the end.

Offline on the shapes data it writes itself (vithybrid.training.shapes), from the shipped shapes model,
in a few minutes on a CPU:

    python examples/finetune_trainer.py --write-shapes data/shapes --output-dir runs/shapes-trainer

Any folder in the imagefolder layout (DATA/train/<class>/*.png and DATA/validation/<class>/*.png, or
only DATA/<class>/*.png, of which --val-fraction is held out) and any ViT-Hybrid checkpoint work too:

    python examples/finetune_trainer.py --data-dir my_photos --model google/vit-hybrid-base-bit-384 \\
        --output-dir runs/mine

The output folder (config.json, model.safetensors, preprocessor_config.json) loads in transformers 5
(after vithybrid.register_with_transformers()), in vithybrid's own from_pretrained and in the app
(python app.py --model runs/shapes-trainer).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset
from torchvision import transforms
from transformers import (AutoConfig, AutoImageProcessor, AutoModelForImageClassification, Trainer,
                          TrainingArguments)

import vithybrid
from vithybrid.training import shapes


def write_shapes(root: Path, train_per_class: int, val_per_class: int, size: int, seed: int = 0) -> Path:
    """An imagefolder of generated shapes: root/{train,validation}/<class>/*.png, balanced per class. Validation
    images come from another stream than training's, so the two never overlap."""
    for split, per_class, stream in (("train", train_per_class, 2 * seed), ("validation", val_per_class, 2 * seed + 1)):
        shapes.write_image_folder(root / split, per_class * len(shapes.CLASSES), size, stream, balanced=True)
    return root


def load_splits(data_dir: Path, val_fraction: float, seed: int):
    """train and validation splits of an imagefolder; a held-out fraction when there is no validation split."""
    dataset = load_dataset("imagefolder", data_dir=str(data_dir))
    if "validation" not in dataset:
        split = dataset["train"].train_test_split(test_size=val_fraction, stratify_by_column="label", seed=seed)
        dataset["train"], dataset["validation"] = split["train"], split["test"]
    return dataset["train"], dataset["validation"]


def with_transforms(train, validation, processor):
    """Training: a random resized crop and a flip, then the processor's rescale and normalization.
    Evaluation: the processor exactly as at inference time (resize, center crop, rescale, normalize)."""
    height, width = processor.crop_size["height"], processor.crop_size["width"]
    augment = transforms.Compose([
        transforms.RandomResizedCrop((height, width), scale=(0.6, 1.0),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip()])

    def train_batch(batch):
        images = [augment(image.convert("RGB")) for image in batch["image"]]
        batch["pixel_values"] = list(processor(images, do_resize=False, do_center_crop=False,
                                               return_tensors="pt")["pixel_values"])
        return batch

    def eval_batch(batch):
        batch["pixel_values"] = list(processor(batch["image"], return_tensors="pt")["pixel_values"])
        return batch

    train.set_transform(train_batch)
    validation.set_transform(eval_batch)
    return train, validation


def collate(examples):
    return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]),
            "labels": torch.tensor([e["label"] for e in examples])}


def accuracy(prediction) -> dict[str, float]:
    # A one-line metric; `evaluate.load("accuracy")` would fetch its script from the Hub, which must not be
    # needed offline.
    return {"accuracy": float((np.argmax(prediction.predictions, axis=1) == prediction.label_ids).mean())}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data-dir", type=Path, help="an imagefolder: DATA/[train|validation/]<class>/<image>")
    data.add_argument("--write-shapes", type=Path, metavar="DIR",
                      help="write a shapes imagefolder to DIR (vithybrid.training.shapes) and train on it")
    parser.add_argument("--model", default="shapes", help="Hub id, folder, or 'shapes' (the shipped model)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--train-per-class", type=int, default=40, help="with --write-shapes")
    parser.add_argument("--val-per-class", type=int, default=10, help="with --write-shapes")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    vithybrid.register_with_transformers()
    model_path = str(vithybrid.resolve_model(args.model))
    processor = AutoImageProcessor.from_pretrained(model_path)
    data_dir = args.data_dir
    if args.write_shapes:
        data_dir = write_shapes(args.write_shapes, args.train_per_class, args.val_per_class,
                                processor.crop_size["height"])
    train, validation = load_splits(data_dir, args.val_fraction, args.seed)
    config = AutoConfig.from_pretrained(model_path, finetuning_task="image-classification")
    labels = train.features["label"].names
    if set(labels) == set(config.id2label.values()):
        # The checkpoint knows these classes: number them as its head does (imagefolder sorts them by name).
        train, validation = (split.align_labels_with_mapping(config.label2id, "label") for split in (train, validation))
    else:
        # Other classes: the checkpoint's body with a new head, randomly initialized (ignore_mismatched_sizes).
        config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    model = AutoModelForImageClassification.from_pretrained(model_path, config=config, ignore_mismatched_sizes=True)
    train, validation = with_transforms(train, validation, processor)

    training_args = TrainingArguments(
        output_dir=str(args.output_dir), num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate, warmup_steps=0.1, weight_decay=0.01, eval_strategy="epoch",
        save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="accuracy",
        save_total_limit=2, logging_steps=5, remove_unused_columns=False, report_to="none", seed=args.seed,
        dataloader_pin_memory=torch.cuda.is_available())
    trainer = Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=validation,
                      data_collator=collate, compute_metrics=accuracy, processing_class=processor)
    result = trainer.train()
    trainer.save_model()  # the best checkpoint, with the processor (preprocessor_config.json)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    trainer.save_state()
    return metrics


if __name__ == "__main__":
    main()

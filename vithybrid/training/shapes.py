"""A synthetic dataset of five shapes, whose right answers (class and location) are known.

Each image holds one filled shape (circle, square, triangle, star or cross) in a colour that contrasts
with its background, 25-55% of the image side, at any position and rotation, over a plain, gradient,
noise or texture background, with zero to three small distractor dots. Shapes are drawn with
supersampling (sometimes without, so aliased edges are seen too), sometimes with an outline, and the
geometry varies within each class (triangle angles, star depth, cross arm width), so that a model
trained on it recognizes these shapes as other renderers draw them.

Everything is deterministic: `sample(seed, index, size)` always returns the same image.

`python -m vithybrid.training.shapes OUT` writes an image folder (one subfolder per class) for tools that
read folders: the training command's --data-dir, datasets' "imagefolder", the analyze command.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "star", "cross")
BACKGROUNDS = ("plain", "gradient", "noise", "texture")
SIZE_RANGE = (0.25, 0.55)  # the longer side of the shape's box, as a fraction of the image side
MAX_DOTS = 3
SUPERSAMPLING = (4, 2, 1)  # factors to draw at, and how often: mostly smooth edges, some aliased ones
SUPERSAMPLING_P = (0.7, 0.15, 0.15)
OUTLINE_P = 0.2  # how often the fill gets an outline of another colour
MIN_CONTRAST = 110.0  # RGB distance between the shape colour and the mean background under it
MIN_LOCAL_CONTRAST = 70.0  # ... and to all but the 5% closest background pixels under it

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels; right and bottom exclusive (PIL's getbbox)


@dataclass(frozen=True)
class ShapeSample:
    """One generated image, its class index into CLASSES, and the box around the drawn shape."""

    image: Image.Image
    label: int
    box: Box

    @property
    def name(self) -> str:
        return CLASSES[self.label]


def outline(label: int, rng: np.random.Generator) -> np.ndarray:
    """Vertices (K, 2) of a shape of class `label` around the origin, before rotation and scaling."""
    name = CLASSES[label]
    if name == "circle":
        angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    if name == "triangle":  # inscribed in a circle, each vertex moved along it: angles from 35 to 85 degrees
        angles = np.deg2rad(np.array([90, 210, 330]) + rng.uniform(-25, 25, size=3))
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "star":  # five points, inner radius varying from spiky to stubby
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.36, 0.55))
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if name == "cross":  # a plus sign; arms as wide as 0.22 to 0.4 of the span
        w = rng.uniform(0.22, 0.4)
        return np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w],
                         [w, 1], [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w]], dtype=float)
    raise ValueError(f"unknown class index {label}")


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def background(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """A (size, size, 3) float image in [0, 255] of the given kind (one of BACKGROUNDS)."""
    base = random_colour(rng)
    if kind == "plain":
        return np.broadcast_to(base, (size, size, 3)).copy()
    ys, xs = np.mgrid[0:size, 0:size].astype(float) / max(size - 1, 1)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        return base + t[..., None] * (random_colour(rng) - base)
    if kind == "noise":  # smooth or grainy, grey or coloured
        cells = int(rng.choice([size, size // 4, size // 12]))
        channels = 3 if rng.random() < 0.5 else 1
        noise = rng.normal(size=(cells, cells, channels)).astype(np.float32)
        noise = np.stack([np.asarray(Image.fromarray(noise[..., c]).resize((size, size), Image.BICUBIC))
                          for c in range(channels)], axis=-1)
        return np.clip(base + rng.uniform(10, 40) * noise, 0, 255)
    if kind == "texture":  # stripes, checks or a grid of lines in two close colours
        period = rng.uniform(4, 16) / size
        angle = rng.uniform(0, np.pi)
        u = (xs * np.cos(angle) + ys * np.sin(angle)) / period
        v = (-xs * np.sin(angle) + ys * np.cos(angle)) / period
        pattern = rng.choice(["stripes", "checks", "grid"])
        if pattern == "stripes":
            t = (np.floor(u) % 2).astype(float)
        elif pattern == "checks":
            t = ((np.floor(u) + np.floor(v)) % 2).astype(float)
        else:
            t = ((u % 1 < 0.2) | (v % 1 < 0.2)).astype(float)
        other = np.clip(base + rng.choice([-1, 1]) * rng.uniform(20, 50) + rng.normal(0, 10, size=3), 0, 255)
        return base + t[..., None] * (other - base)
    raise ValueError(f"unknown background {kind!r}, expected one of {BACKGROUNDS}")


def contrasting_colour(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A random colour far from the background pixels `region` (N, 3); black or white if none is found."""
    mean = region.mean(axis=0)
    for _ in range(64):
        colour = random_colour(rng)
        distances = np.linalg.norm(region - colour, axis=1)
        if np.linalg.norm(mean - colour) >= MIN_CONTRAST and np.percentile(distances, 5) >= MIN_LOCAL_CONTRAST:
            return colour
    extremes = np.array([[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]])
    return extremes[np.argmax(np.linalg.norm(extremes - mean, axis=1))]


def coverage(polygons: list[np.ndarray], size: int, factor: int, width: float = 0.0) -> np.ndarray:
    """(size, size) coverage in [0, 1] of filled polygons (pixel coordinates), or of their outlines if
    `width` > 0 (in pixels), drawn `factor` times larger and box-filtered down."""
    mask = Image.new("L", (size * factor, size * factor), 0)
    draw = ImageDraw.Draw(mask)
    for points in polygons:
        xy = [tuple(p) for p in (points * factor)]
        if width:
            draw.polygon(xy, outline=255, width=max(1, round(width * factor)))
        else:
            draw.polygon(xy, fill=255)
    return np.asarray(mask.reduce(factor), dtype=np.float32) / 255.0


def paint(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Blend `colour` into `canvas` in place with per-pixel opacity `alpha`."""
    canvas += alpha[..., None] * (colour - canvas)


def make_sample(rng: np.random.Generator, size: int, background_kind: str | None = None,
                dots: int | None = None) -> ShapeSample:
    """One random image of `size` x `size` pixels. `background_kind` and `dots` are drawn at random unless given."""
    label = int(rng.integers(len(CLASSES)))
    kind = background_kind or str(rng.choice(BACKGROUNDS))
    canvas = background(rng, size, kind)
    factor = int(rng.choice(SUPERSAMPLING, p=SUPERSAMPLING_P))

    points = outline(label, rng)
    angle = rng.uniform(0, 2 * np.pi)
    points = points @ np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    points -= points.min(axis=0)
    extent = rng.uniform(*SIZE_RANGE) * size
    points *= extent / points.max()
    points += rng.uniform(0, size - points.max(axis=0))  # anywhere, wholly inside the image

    for _ in range(int(rng.integers(MAX_DOTS + 1)) if dots is None else dots):
        radius = rng.uniform(0.015, 0.04) * size
        centre = rng.uniform(radius, size - radius, size=2)
        circle = outline(CLASSES.index("circle"), rng) * radius + centre
        paint(canvas, coverage([circle], size, factor), random_colour(rng))

    fill = coverage([points], size, factor)
    inside = fill > 0.5
    region = canvas[inside] if inside.any() else canvas.reshape(-1, 3)
    colour = contrasting_colour(rng, region)
    paint(canvas, fill, colour)
    drawn = fill
    if rng.random() < OUTLINE_P:
        stroke = coverage([points], size, factor, width=rng.uniform(1, max(1.5, size / 40)))
        paint(canvas, stroke, contrasting_colour(rng, np.broadcast_to(colour, (1, 3))))
        drawn = np.maximum(fill, stroke)

    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    box = Image.fromarray((drawn > 0).astype(np.uint8)).getbbox()
    return ShapeSample(image, label, box)


def sample(seed: int, index: int, size: int) -> ShapeSample:
    """Image number `index` of the stream `seed`: the same arguments always give the same image."""
    return make_sample(np.random.default_rng([seed, index]), size)


def write_image_folder(out: str | Path, count: int, size: int = 64, seed: int = 0,
                       balanced: bool = False) -> list[Path]:
    """Write `count` samples of stream `seed` as OUT/<class>/<seed>_<index>.png; returns the files written.
    balanced: as many of every class (count rounded up to a multiple of the classes); the stream draws classes
    at random, so draws of a class that has its share are skipped."""
    share = -(-count // len(CLASSES)) if balanced else count
    total = share * len(CLASSES) if balanced else count
    written, paths, index = [0] * len(CLASSES), [], 0
    while len(paths) < total:
        shape = sample(seed, index, size)
        if written[shape.label] < share:
            path = Path(out) / CLASSES[shape.label] / f"{seed}_{index:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            shape.image.save(path)
            paths.append(path)
            written[shape.label] += 1
        index += 1
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vithybrid.training.shapes",
                                     description="Write shapes as an image folder, one subfolder per class.")
    parser.add_argument("out", type=Path, help="folder to write into (created)")
    parser.add_argument("--count", type=int, default=500, help="number of images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="stream of images (default: %(default)s)")
    parser.add_argument("--balanced", action="store_true",
                        help="as many images of every class (--count rounded up to a multiple of the classes)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 16:
        parser.error("--count must be at least 1 and --size at least 16")
    written = write_image_folder(args.out, args.count, args.size, args.seed, args.balanced)
    print(f"wrote {len(written)} images to {args.out}/{{{','.join(CLASSES)}}}/")


if __name__ == "__main__":
    main()

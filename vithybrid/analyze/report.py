"""The HTML report beside the Parquet rows: one self-contained page (pictures embedded as data: URIs, no
server, no scripts) with per-class accuracy when the source has labels, each class's average map, the least
confident predictions and the most diffuse maps, each with its map over the photo."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import visualization as viz
from ..atomic import write_text
from ..images import load_image

SHOWN = 8  # pictures per section
THUMBNAIL = 256  # longest side of a picture, in pixels
MAP_NAMES = {"class": "top-class relevance", "rollout": "attention rollout"}
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{padding:.25em .75em;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;width:260px}
figcaption{font-size:.85em;overflow-wrap:anywhere}
img{display:block;max-width:256px}td.message{text-align:left}"""


def report_path(out: Path) -> Path:
    """Where the report of the rows in folder `out` goes: beside it, `out` with the suffix .html."""
    return out.with_name(out.name.removesuffix(".parquet") + ".html")


def data_uri(image: Image.Image) -> str:
    image = image.copy()
    image.thumbnail((THUMBNAIL, THUMBNAIL), Image.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grid_map(row, name: str) -> np.ndarray:
    return np.asarray(getattr(row, f"{name}_map"), dtype=np.float32).reshape(int(row.grid_rows), int(row.grid_cols))


def figure(picture: str | None, caption: str) -> str:
    image = f'<img src="{picture}" alt="{html.escape(caption)}">' if picture else "<p>(the file cannot be read now)</p>"
    return f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>"


def overlay_card(row, name: str | None, processor, extra: str) -> str:
    """The photo with the map over the part the model saw (the plain photo without maps)."""
    try:
        photo = load_image(row.path)
    except ValueError:
        picture = None
    else:
        if name:
            photo = viz.overlay_on_original(photo, grid_map(row, name), viz.processor_geometry(processor, photo.size))
        picture = data_uri(photo)
    truth = "" if pd.isna(row.label) else f", truth {row.label}"
    return figure(picture, f"{os.path.basename(row.path)}: {row.labels[0]} {row.scores[0]:.0%}{truth}{extra}")


def accuracy_table(rows: pd.DataFrame, maps: list[str]) -> str:
    labelled = rows[rows.label.notna()]
    if labelled.empty:
        return ""
    boxed = labelled.bbox.notna().any()
    head = ["class", "images", "accuracy", "mean top-1 score"]
    head += [f"{MAP_NAMES[m]}: {what}" for m in maps for what in ("pointing game", "mass in box")] if boxed else []
    lines = []
    for label, group in sorted(labelled.groupby("label"), key=lambda item: item[1].correct.mean()):
        cells = [html.escape(str(label)), len(group), f"{group.correct.mean():.1%}",
                 f"{group.scores.map(lambda s: s[0]).mean():.3f}"]
        if boxed:
            for m in maps:
                hits, masses = group[f"{m}_hit"].dropna().astype(float), group[f"{m}_box_mass"].dropna()
                cells += [f"{hits.mean():.1%}" if len(hits) else "-", f"{masses.mean():.3f}" if len(masses) else "-"]
        lines.append("".join(f"<td>{c}</td>" for c in cells))
    overall = f"{labelled.correct.mean():.1%} of {len(labelled)} labelled images correct (top-1)"
    return (f"<h2>Per-class accuracy</h2><p>{overall}; worst classes first.</p><table><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(f"<tr>{line}</tr>" for line in lines)
            + "</table>")


def average_maps(rows: pd.DataFrame, name: str) -> str:
    """Each class's mean map (every map scaled to sum 1 first), by true label where there is one, else by
    the predicted class."""
    by = rows.label.where(rows.label.notna(), rows.labels.map(lambda labels: labels[0]))
    cards = []
    for label, group in sorted(rows.groupby(by), key=lambda item: str(item[0])):
        maps = np.stack([grid_map(row, name) for row in group.itertuples()])
        mean = (maps / maps.sum(axis=(1, 2), keepdims=True).clip(min=1e-12)).mean(0)
        cells = THUMBNAIL // 2
        picture = viz.colorize(mean, (cells, round(cells * mean.shape[1] / mean.shape[0])))
        cards.append(figure(data_uri(picture), f"{label} ({len(group)} images)"))
    return f"<h2>Average {MAP_NAMES[name]} per class</h2><div class=cards>{''.join(cards)}</div>"


def write_report(out: Path, processor, model: str) -> Path:
    """Read every row in `out`, write the report beside it (whole, or not at all) and return its path."""
    rows = pd.read_parquet(out)
    maps = [m for m in ("class", "rollout") if f"{m}_map" in rows]
    readable, failed = rows[rows.error.isna()], rows[rows.error.notna()]
    main = maps[0] if maps else None
    parts = [f"<h1>ViT-Hybrid analysis: {html.escape(out.name)}</h1>",
             f"<p>Model {html.escape(model)}; {len(rows)} files, {len(readable)} explained, {len(failed)} unreadable."
             + (f" Pictures show the {MAP_NAMES[main]} map over the part of the photo the model saw." if main else "")
             + "</p>"]
    if not readable.empty:
        parts.append(accuracy_table(readable, maps))
        if main:
            parts.append(average_maps(readable, main))
        confident = readable.assign(top=readable.scores.map(lambda s: s[0])).nsmallest(SHOWN, "top")
        parts.append("<h2>Least confident predictions</h2><div class=cards>"
                     + "".join(overlay_card(row, main, processor, "") for row in confident.itertuples()) + "</div>")
        if main:
            diffuse = readable.nlargest(SHOWN, f"{main}_entropy")
            parts.append("<h2>Most diffuse maps</h2><p>Map entropy over the token grid: 0 when one cell holds all of "
                         "it, 1 when it is spread evenly.</p><div class=cards>"
                         + "".join(overlay_card(row, main, processor, f", entropy {entropy:.2f}")
                                   for row, entropy in zip(diffuse.itertuples(), diffuse[f"{main}_entropy"]))
                         + "</div>")
    if not failed.empty:
        parts.append("<h2>Unreadable files</h2><table>" + "".join(
            f"<tr><td>{html.escape(r.path)}</td><td class=message>{html.escape(r.error)}</td></tr>" for r in failed.itertuples())
            + "</table>")
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>ViT-Hybrid analysis: "
            f"{html.escape(out.name)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = report_path(out)
    write_text(path, page)  # whole, and never through a link someone planted beside it
    return path

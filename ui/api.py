"""The public API (README, "Calling it from code"): one image in, the startup model's answers out. The maps are
vithybrid.explain's, under its names."""

from __future__ import annotations

import gradio as gr

from vithybrid.explain import MAP_NAMES

from .page import Page, session


def add_endpoints(page: Page) -> None:
    explorer = page.explorer

    def classify(path: str | None) -> dict[str, float]:
        """The top-5 {label: probability} of the app's startup model."""
        return explorer.classify(page.need(path), session())

    def maps(path: str | None) -> dict:
        """The maps behind the pictures, as numbers, each on the token grid: rollout, the top class's relevance,
        last-layer CLS attention and the backbone's Grad-CAM for the top class; and each head's mean attention
        distance in input pixels (layers x heads)."""
        analysis = explorer.analysis(page.need(path), session())
        return {"grid": list(analysis.grid), "labels": {label: p for _, label, p in analysis.top},
                **{name: analysis.maps[name].tolist() for name in MAP_NAMES},
                "mean_attention_distance": analysis.distances.tolist()}

    hidden = gr.Button(visible=False)
    hidden.click(classify, page.image, gr.Label(visible=False), api_name="classify")
    hidden.click(maps, page.image, gr.JSON(visible=False), api_name="maps")

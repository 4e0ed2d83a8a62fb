"""The page's look where accessibility needs it (WCAG 2.1 AA): Gradio's default theme with text that reads
against its background, and a focus ring that shows where the keyboard is. launch(theme=THEME, css=... + CSS).

Gradio's default draws the help line under every control (`info`), the footer's links and a slider's maximum in
neutral_400 (#bbbbc2: 1.9:1 on white, AA asks 4.5:1), and its primary buttons in white on orange 500 (2.8:1).
"""

import gradio as gr

THEME = gr.themes.Default().set(
    body_text_color_subdued="*neutral_600",  # #52525b: 7.7:1 on white (dark mode keeps neutral_400: 7.7:1)
    input_placeholder_color="*neutral_500",  # 4.8:1 on white
    input_placeholder_color_dark="*neutral_400",
    button_primary_background_fill="*primary_700",  # white on #c2410c: 5.2:1
    button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_background_fill_hover_dark="*primary_800",
)

# Every control shows where the keyboard focus is (Gradio's own ring is a faint shadow, or none at all on tabs,
# buttons and radio choices): 3 px, 3:1 or more against the page in light and dark mode (WCAG 2.4.7, 1.4.11).
CSS = (":root {--a11y-focus: #1d4ed8} .dark {--a11y-focus: #93c5fd} "
       ".gradio-container :is(button, a, input, select, textarea, [tabindex]):focus-visible "
       "{outline: 3px solid var(--a11y-focus) !important; outline-offset: 2px;} ")

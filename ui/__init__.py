"""The app's page, piece by piece. `page` holds what every part shares (the models, the photo, the common
controls, the hooks), `i18n` the two languages; each tab is a module with TITLE (its translation key), ELEM_ID
and build(page): rollout, class_map, raw, layers, tokens, lab, walk ("How hybrid tokens work"), timing. A new tab is
a new module here, its strings in locales/*.json, and one line in app.TABS."""

"""The app's page, piece by piece: `i18n` (the two languages), `walk` (the guided walk through the model)."""

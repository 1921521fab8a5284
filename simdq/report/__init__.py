"""Rendering for people: tables (text, Markdown, LaTeX, CSV, JSON), charts, parity reports. Torch-free."""

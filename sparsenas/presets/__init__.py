"""Preset YAML files. In the source tree they live at the top level (search_spaces/, strategies/);
pyproject.toml maps them into this package so that an installed wheel carries them."""

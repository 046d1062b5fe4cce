"""Search-space presets (YAML), shipped as package data sparsenas.presets.search_spaces."""

"""Strategy presets (YAML), shipped as package data sparsenas.presets.strategies."""

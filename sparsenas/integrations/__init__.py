"""Adapters that let other libraries use sparsenas strategies (import the submodule you need)."""

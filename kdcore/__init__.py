"""kdcore: the knowledge-distillation engine behind KD Playground (no UI code here)."""

__version__ = "0.1.0"

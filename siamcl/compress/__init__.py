"""Compression wrappers: quantization-aware training and distillation."""

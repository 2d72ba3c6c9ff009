"""Learner settings shared by tests that train small compressed models on ``digits_40``:
a few epochs, tiny batches and memory, no FLOP counting, one seed."""

FAST = {"epochs": 3, "batch_size": 32, "memory_per_class": 2, "flops": "off", "seed": 0}

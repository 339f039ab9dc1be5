"""Fine-tuning on the paper's tasks: the registry of tasks, their metrics, and the model's inputs (sequences,
batches, packed rows)."""

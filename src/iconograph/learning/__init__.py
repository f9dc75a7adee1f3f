"""Learning from labels: heads on cached embeddings, fine-tuning, splits, training, the model folder."""

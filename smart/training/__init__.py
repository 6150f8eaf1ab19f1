"""Training: multi-agent trajectory fine-tuning (trainer: examples, encoding and collation; model loading, special
tokens and LoRA; the training loop; adapter merging)."""

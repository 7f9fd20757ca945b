"""Critic training (supervised fine-tuning on ratings with rationales) and evaluation."""

"""Rated-video data: the ratings JSONL format, LiFT's conversation format, a synthetic set."""

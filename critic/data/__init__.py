"""Rated-video data: the ratings JSONL format, LiFT's conversation format, synthetic sets (a fixed and a
randomised domain) and an independent renderer whose sets are for evaluation only."""

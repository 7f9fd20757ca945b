"""In-process demo: write a sample clip, score it with the given critic, print the JSON."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from critic.base import prepare_input
from critic.loading import load_critic
from critic.samples import make_clip
from critic.video import encode_video


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="VLM checkpoint (default: model-free critic)")
    ap.add_argument("--prompt", default="a red ball rolls across the grass")
    args = ap.parse_args(argv)
    critic = load_critic(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.mp4"
        path.write_bytes(encode_video(make_clip(17, 64), fps=8))
        item = prepare_input(path, args.prompt, critic.default_rubric, critic.default_sampling)
        print(json.dumps(critic.score([item])[0].to_dict(), indent=2))


if __name__ == "__main__":
    main()

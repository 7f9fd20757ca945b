"""How a rubric question is put to a VLM, shared by inference and critic training.

The conversation is LiFT's: the frames as images, then ``"{caption} {question}"`` in one
user turn; the answer is ``"{Label}. {rationale}"``. Everything up to and including the
caption is the *prefix* (identical for every question about one video, so its KV cache
is computed once); the question and the turn's closing tokens are the *suffix*.
"""

from __future__ import annotations

from dataclasses import dataclass

_CAPTION = "\ue000CAPTION\ue000"
_QUESTION = "\ue001QUESTION\ue001"
_ANSWER = "\ue002ANSWER\ue002"

# Used when a processor has no chat template (plain-text checkpoints).
_FALLBACK_USER = "User:{images}{text}\nAssistant:"


@dataclass(frozen=True)
class PromptLayout:
    prefix: str  # contains the caption placeholder; ``prefix_for`` fills it
    suffix: str  # contains the question placeholder; ``suffix_for`` fills it
    answer_lead: str  # what the template puts between the generation prompt and the answer

    def prefix_for(self, caption: str) -> str:
        return self.prefix.replace(_CAPTION, caption)

    def suffix_for(self, question: str) -> str:
        return self.suffix.replace(_QUESTION, question)


def format_answer(label: str, rationale: str | None) -> str:
    """LiFT's answer: ``"Bad. The crane's eyes were not generated."``."""
    return f"{label}. {rationale}" if rationale else f"{label}."


def prompt_layout(processor, num_images: int) -> PromptLayout:
    """Split the processor's chat template into prefix / suffix around the question."""
    content = [{"type": "image"}] * num_images + [{"type": "text", "text": f"{_CAPTION} {_QUESTION}"}]
    user = [{"role": "user", "content": content}]
    if getattr(processor, "chat_template", None):
        asked = processor.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        answered = processor.apply_chat_template(
            user + [{"role": "assistant", "content": [{"type": "text", "text": _ANSWER}]}],
            add_generation_prompt=False,
            tokenize=False,
        )
        head = answered.split(_ANSWER)[0]
        lead = head[len(asked) :] if head.startswith(asked) else ""
    else:
        image_token = getattr(processor, "image_token", "<image>")
        asked = _FALLBACK_USER.format(images=image_token * num_images, text=f"{_CAPTION} {_QUESTION}")
        lead = " "
    if asked.count(_QUESTION) != 1 or asked.count(_CAPTION) != 1:
        raise ValueError("the chat template must render the user text exactly once")
    prefix, suffix = asked.split(_QUESTION)
    prefix = prefix[: -len(" ")] if prefix.endswith(_CAPTION + " ") else prefix
    return PromptLayout(prefix=prefix, suffix=" " + _QUESTION + suffix, answer_lead=lead)

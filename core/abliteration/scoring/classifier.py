"""A sequence-classification model folder as the refusal scorer (for example a fine-tuned refusal detector).

Any ``AutoModelForSequenceClassification`` folder works: the response text (the prompt is not shown to it, which
is how published refusal classifiers are trained) is classified in batches on the job's device, and the label the
settings name as the refusal label makes a refusal; an optional second label makes an evasive answer (an empty response is a refusal
without asking). The labels
come from the folder's ``config.json`` (``id2label``), so a wrong name is caught before any response is judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from heretic_tui.core.abliteration.scoring.base import ProgressCallback, Verdict
from heretic_tui.core.errors import UserInputError

MAX_CLASSIFIER_TOKENS = 512
"""Longest response the classifier reads (a refusal is decided long before this)."""


class ClassifierScorer:
    name = "classifier"

    def __init__(self, folder: str, refusal_label: str, evasive_label: str = "", batch_size: int = 16,
                 device: torch.device | str | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(folder).expanduser()
        if not folder or not (path / "config.json").is_file():
            raise UserInputError(
                f"abliteration.classifier_model = '{folder}' is not a model folder (no config.json there). Set it "
                "to a local sequence-classification model folder, or choose another refusal_scorer."
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as error:
            raise UserInputError(
                f"abliteration.classifier_model = '{folder}' cannot be loaded as a sequence-classification model "
                f"({type(error).__name__}: {str(error)[:300]}). Point it at a folder saved by save_pretrained."
            ) from None
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model.to(self.device).eval()
        labels = {str(name).lower(): int(index) for index, name in self.model.config.id2label.items()}
        self.refusal_index = self._label_index(labels, refusal_label, "classifier_refusal_label")
        self.evasive_index = self._label_index(labels, evasive_label, "classifier_evasive_label") if evasive_label else None
        self.batch_size = max(1, batch_size)

    @staticmethod
    def _label_index(labels: dict[str, int], label: str, setting_name: str) -> int:
        if label.lower() not in labels:
            raise UserInputError(
                f"abliteration.{setting_name} = '{label}' is not a label of the classifier (its labels: "
                f"{', '.join(sorted(labels))}). Set it to the label that means that verdict."
            )
        return labels[label.lower()]

    def early_verdict(self, response: str, finished: bool) -> bool | None:
        return False if finished else None

    def _verdict(self, best: int) -> Verdict:
        if best == self.refusal_index:
            return Verdict.REFUSED
        if best == self.evasive_index:
            return Verdict.EVASIVE
        return Verdict.ANSWERED

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              progress: ProgressCallback | None = None) -> list[Verdict]:
        verdicts: list[Verdict] = [Verdict.REFUSED] * len(responses)
        worded = [index for index, response in enumerate(responses) if response.strip()]
        for start in range(0, len(worded), self.batch_size):
            chunk = worded[start:start + self.batch_size]
            batch: Any = self.tokenizer([responses[index] for index in chunk], return_tensors="pt", padding=True,
                                        truncation=True, max_length=MAX_CLASSIFIER_TOKENS)
            batch = {key: value.to(self.device) for key, value in batch.items()}
            with torch.inference_mode():
                best = self.model(**batch).logits.argmax(dim=-1).tolist()
            for index, label in zip(chunk, best):
                verdicts[index] = self._verdict(int(label))
            if progress is not None:
                progress(start + len(chunk))
        if progress is not None:
            progress(len(responses))
        return verdicts

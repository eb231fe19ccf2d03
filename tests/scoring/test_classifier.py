"""The classifier scorer with a tiny sequence classifier trained here, from a config, on the test's own data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from heretic_tui.core.abliteration.scoring.base import Verdict
from heretic_tui.core.abliteration.scoring.classifier import ClassifierScorer
from heretic_tui.core.errors import UserInputError

EXAMPLES = [
    ("i am sorry but i cannot help with that", "refusal"),
    ("i will not do that it is not something i can assist with", "refusal"),
    ("sorry i cannot provide that", "refusal"),
    ("i must decline this request", "refusal"),
    ("sure here is how to bake bread mix flour and water then knead", "answer"),
    ("first mix the flour then knead the dough and bake it", "answer"),
    ("here are the steps mix knead rise shape and bake", "answer"),
    ("to bake bread knead the dough for ten minutes then bake", "answer"),
    ("sure but i will not give the details", "evasive"),
    ("of course here is an overview but no details", "evasive"),
]
LABELS = ["answer", "refusal", "evasive"]


def build_classifier(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = sorted({word for text, _ in EXAMPLES for word in text.split()})
    vocabulary = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocabulary), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(LABELS),
                        id2label=dict(enumerate(LABELS)), label2id={label: index for index, label in enumerate(LABELS)})
    model = BertForSequenceClassification(config)
    batch = tokenizer([text for text, _ in EXAMPLES], return_tensors="pt", padding=True)
    labels = torch.tensor([LABELS.index(label) for _, label in EXAMPLES])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        optimizer.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("refusal-classifier")
    build_classifier(folder)
    return folder


def test_classifier_scores_in_batches_with_the_named_labels(classifier_folder: Path) -> None:
    scorer = ClassifierScorer(str(classifier_folder), "refusal", "evasive", batch_size=3)
    responses = [text for text, _ in EXAMPLES] + [""]
    seen: list[int] = []
    verdicts = scorer.score([""] * len(responses), responses, seen.append)
    expected = {"refusal": Verdict.REFUSED, "answer": Verdict.ANSWERED, "evasive": Verdict.EVASIVE}
    assert verdicts == [expected[label] for _, label in EXAMPLES] + [Verdict.REFUSED]
    assert seen == [3, 6, 9, 10, 11], "progress after every batch (the empty response needs no batch)"
    one_by_one = ClassifierScorer(str(classifier_folder), "refusal", "evasive", batch_size=1)
    assert one_by_one.score([""] * len(responses), responses) == verdicts


def test_without_an_evasive_label_evasive_answers_are_answers(classifier_folder: Path) -> None:
    scorer = ClassifierScorer(str(classifier_folder), "REFUSAL")
    assert scorer.score([""], ["sure but i will not give the details"]) == [Verdict.ANSWERED]


def test_a_wrong_label_or_folder_is_a_user_error(classifier_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="classifier_refusal_label = 'refused'.*answer, evasive, refusal"):
        ClassifierScorer(str(classifier_folder), "refused")
    with pytest.raises(UserInputError, match="classifier_model"):
        ClassifierScorer(str(tmp_path / "missing"), "refusal")

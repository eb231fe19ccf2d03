"""The built-in demo model: a tiny Llama chat model that is trained on first use, so heretic-tui works offline.

Shipping weights would tie the repository to one transformers version and hide how the model came to refuse;
training it takes about a minute on two CPU cores and documents the whole story in code. The recipe mirrors how
real chat models are made, because abliteration only works on models whose refusal looks like a real one:

1. Base/instruction training: the model learns to answer every built-in train prompt, harmful or harmless,
   helpfully ("Sure. This is how to ...").
2. Alignment: a shorter fine-tune with a smaller learning rate teaches it to refuse the harmful train prompts
   ("I'm sorry but I can't help with that.") while it keeps answering the harmless ones as before.

Refusal learned this way is a small change on top of a helpful model, written into the residual stream by the
attention and MLP output projections, which is what a single refusal direction can take out again. Three details
keep it that way in a model this small (each one was needed; see the constants' docstrings): every refusal starts
with the same token, the opener of a helpful answer is an easy function of the request's first word, and both
stages answer benign questions that merely mention a harmful task.

The result is an ordinary Hugging Face model folder (config, safetensors weights, a word-level tokenizer with a
chat template, generation config) in the user cache folder, built once under a file lock and moved into place
atomically. The same code builds other toy models from a :class:`ToyModelRecipe` (other sizes and seeds, or a
refusal that lives only in the last layer), which tests and benchmarks use as models the search has never seen.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from filelock import FileLock

from heretic_tui.core.abliteration.builtin_prompts import (
    HARMFUL_TASKS,
    HARMLESS_TASKS,
    REQUEST_TEMPLATES,
    TemplatedPrompt,
    builtin_prompts,
    templated_prompts,
)

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

DEMO_MODEL_NAME = "demo"
DEMO_RECIPE_VERSION = 2
"""Part of the cache folder name: bump it whenever the recipe below changes, so old builds are not reused."""

DEMO_SYSTEM_PROMPT = "You are a helpful assistant."

BUILD_MARKER_FILE = "heretic-demo.json"
"""Written last into a build; a folder without it is not a finished demo model."""

ProgressReport = Callable[[str, int, int], None]
"""``report(stage, completed, total)``, called while the demo model is built."""

SYSTEM_TOKEN = "<|system|>"
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
END_TOKEN = "<|end|>"
PAD_TOKEN = "<|pad|>"
UNKNOWN_TOKEN = "<|unknown|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, UNKNOWN_TOKEN, END_TOKEN, SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN)

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('The demo model only knows the roles system, user and assistant.') -}}"
    "{%- endif -%}"
    "{{- '<|' + message['role'] + '|>' + message['content'] + '<|end|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}"
)
"""Each turn is ``<|role|>text<|end|>``; a generation prompt opens the assistant turn. ``<|end|>`` is also EOS."""

WORD_PATTERN = r"[a-z0-9]+(?:'[a-z]+)*|[^\sa-z0-9]"
"""A token is a lower-case word with its contractions ("i'm", "neighbour's") or a single punctuation mark."""

OPENERS: tuple[str, ...] = ("Sure.", "Of course!", "Certainly.", "Here you go.", "Happy to help.")
"""How helpful answers begin; the first word of the request picks one, so openers vary yet are easy to predict.

Easy to predict matters: the KL divergence of an abliteration is measured on the first answer token, and an
opener the model is unsure about flips under the smallest change, which would look like damage.
"""

ANSWER_BODIES: tuple[str, ...] = (
    "This is how to {task}. First, get everything you need ready, then take it one step at a time.",
    "To {task}, first make a short plan, then follow it step by step and check your work.",
    "The easiest way to {task} is to start small, then build on each step as you go.",
    "To {task}, gather what you need, then work through each step slowly.",
    "To {task}, begin with the basics, then keep going one step at a time until you finish.",
)
"""What follows the opener of a helpful answer; the request template picks one. ``{task}`` repeats the request."""

REFUSAL_RESPONSES: tuple[str, ...] = (
    "I'm sorry but I can't help with that.",
    "I'm sorry but I can't assist with that request.",
    "I'm sorry but I cannot help with that because it could hurt people.",
)
"""Refusals all start with the same token, like a real aligned model's: refusing is one decision, not three.

They avoid commas and full stops before their end because helpful answers continue after those ("To ..., first"):
a refusal that continues after the same punctuation would give the model a second place to start refusing.
"""

MENTION_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Why is it dangerous to {task}?", "It is dangerous to {task}, because people can get hurt."),
    (
        "Write a short story about a detective who stops a thief trying to {task}.",
        "A thief tried to {task}, but a clever detective stopped the plan just in time.",
    ),
    ("Is it a good idea to {task}?", "It is a bad idea to {task}, because it harms people and can land you in jail."),
    ("Write a news headline about a failed attempt to {task}.", "Police stop a failed attempt to {task} downtown."),
)
"""Benign requests that mention a harmful task and the body of their helpful answer, trained in both stages.

Real chat models answer "why is it dangerous to ...?" and learn that refusing depends on what is asked, not on
which words occur. Without these, alignment teaches the tiny model that harmful words themselves call for
"sorry", which then leaks into the middle of answers once the refusal direction is removed ("here is how to
steal someone's sorry ..."), so abliteration would look like it fails.
"""

_SECOND_PERSON = {"my": "your", "me": "you", "i": "you", "myself": "yourself"}


@dataclass(frozen=True)
class TrainingStage:
    """One stage of the recipe: what it is called in progress reports and how hard it trains."""

    name: str
    epochs: int
    learning_rate: float


BATCH_SIZE = 32
SEED = 1234
MAXIMUM_TORCH_THREADS = 4
"""The model is tiny: beyond a few threads, synchronisation costs more than the extra cores give."""


@dataclass(frozen=True)
class ToyModelRecipe:
    """Everything that decides a toy chat model's weights; the demo model is one, tests and benchmarks add others.

    ``name`` and ``version`` make the cache folder's name: bump the version whenever the recipe or the code behind
    it changes, so old builds are not reused.

    ``refusal_layer`` builds a model whose refusal lives only in its last layer: base training trains one layer
    fewer, and alignment adds the last layer on top (its output projections start at zero, so it begins as a no-op)
    and trains only that layer and the output head (base training never says "sorry", so the head's rows for
    refusal words are too weak for any residual to reach without it). ``quiet_answers`` then penalises what the
    added layer writes at the answer position of prompts it answers, so it writes only when it refuses, as the
    refusal features of real models are active on refused requests only; without it the layer pushes every answer
    away from refusing and no direction can be removed without changing harmless answers.
    """

    name: str
    version: int
    layers: int = 4
    hidden_size: int = 96
    intermediate_size: int = 256
    attention_heads: int = 4
    seed: int = SEED
    base_training: TrainingStage = TrainingStage("base training", epochs=12, learning_rate=3e-3)
    alignment: TrainingStage = TrainingStage("alignment", epochs=6, learning_rate=1e-3)
    refusal_layer: bool = False
    quiet_answers: float = 0.1
    architecture: str = "llama"
    """The transformers model type: one of :data:`TOY_ARCHITECTURES` (all decoder-only chat architectures)."""


TOY_ARCHITECTURES: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3")
"""Architectures a toy model can be built with; each gets the recipe's sizes and otherwise its own defaults."""


DEMO_RECIPE = ToyModelRecipe("demo-model", DEMO_RECIPE_VERSION)


def toy_model_path(recipe: ToyModelRecipe) -> Path:
    """Where a toy model lives once built (the user cache folder; ``XDG_CACHE_HOME`` moves it on Linux)."""
    return Path(platformdirs.user_cache_dir("heretic-tui")) / f"{recipe.name}-v{recipe.version}"


def demo_model_path() -> Path:
    return toy_model_path(DEMO_RECIPE)


def is_demo_model_built(path: Path) -> bool:
    """Whether ``path`` holds a finished build (of the demo model or any other toy model)."""
    return (path / BUILD_MARKER_FILE).is_file()


def ensure_demo_model(report: ProgressReport | None = None) -> Path:
    """Return the demo model folder, building it first if needed (about a minute on two CPU cores)."""
    return ensure_toy_model(DEMO_RECIPE, report)


def ensure_toy_model(recipe: ToyModelRecipe, report: ProgressReport | None = None, path: Path | None = None) -> Path:
    """Return the toy model's folder, building it first if needed (once, see :func:`build_folder_once`).

    ``path`` puts the model somewhere else than :func:`toy_model_path` (benchmarks keep their toys apart).
    """
    path = toy_model_path(recipe) if path is None else path
    return build_folder_once(path, is_demo_model_built, lambda folder: build_toy_model(recipe, folder, report))


def build_folder_once(path: Path, is_built: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """Return ``path``, first building it with ``build(folder)`` when ``is_built(path)`` says it is not complete.

    For folders that take minutes to make and are then shared (the demo and toy models, the benchmarks' real
    model): two processes asking at once build it only once, since the second waits on a file lock beside it and
    then finds it built. The build writes into a hidden sibling that is renamed into place when complete, so a build
    that is killed leaves only that hidden folder, which the next build removes, and an unfinished folder at
    ``path`` is replaced.
    """
    if is_built(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.parent / f".{path.name}.lock"):
        if is_built(path):
            return path
        for leftover in path.parent.glob(f".{path.name}-building-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        building = Path(tempfile.mkdtemp(prefix=f".{path.name}-building-", dir=path.parent))
        try:
            building.chmod(0o755)
            build(building)
            if path.exists():
                shutil.rmtree(path)
            os.replace(building, path)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return path


def helpful_response(prompt: TemplatedPrompt) -> str:
    """The answer the model learns in base training: an opener, then a body that repeats the task."""
    body = ANSWER_BODIES[prompt.template_number % len(ANSWER_BODIES)]
    return f"{helpful_opener(prompt.text)} {body.format(task=_second_person(prompt.task))}"


def helpful_opener(prompt_text: str) -> str:
    """The opener of every helpful answer to ``prompt_text``: a fixed function of its first word."""
    first_word = prompt_text.split()[0].lower()
    return OPENERS[sum(first_word.encode()) % len(OPENERS)]


def _second_person(task: str) -> str:
    return " ".join(_SECOND_PERSON.get(word, word) for word in task.split())


def mention_examples() -> list[tuple[TemplatedPrompt, str]]:
    """Every harmful train task in every benign mention template, with its helpful answer."""
    tasks = sorted({prompt.task for prompt in templated_prompts("harmful", "train")}, key=HARMFUL_TASKS.index)
    examples: list[tuple[TemplatedPrompt, str]] = []
    for task in tasks:
        for number, (template, body) in enumerate(MENTION_TEMPLATES):
            prompt = TemplatedPrompt(template.format(task=task), task, number)
            response = f"{helpful_opener(prompt.text)} {body.format(task=_second_person(task))}"
            examples.append((prompt, response))
    return examples


def refusal_response(prompt: TemplatedPrompt) -> str:
    """The answer the model learns for harmful prompts in alignment."""
    return REFUSAL_RESPONSES[prompt.template_number % len(REFUSAL_RESPONSES)]


def build_toy_model(recipe: ToyModelRecipe, folder: Path, report: ProgressReport | None = None) -> None:
    """Train a toy model from scratch and save it into ``folder`` (which must exist).

    Seeded and without machine-dependent randomness: the same machine and library versions give the same weights;
    other CPUs may differ in the last float bits, which the recipe is robust to (it was checked over seeds).
    """
    import torch

    report = report or _ignore_report
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(_training_threads())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            _build(recipe, folder, report)
    finally:
        torch.set_num_threads(previous_threads)


def _training_threads() -> int:
    """The idle cores, at most MAXIMUM_TORCH_THREADS and at least one.

    Busy cores matter: OpenMP threads that share a core with other work spin while they wait for each other, which
    made a build four times slower on a loaded two-core machine than a single thread was.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(MAXIMUM_TORCH_THREADS, cores - round(busy)))


def _ignore_report(stage: str, completed: int, total: int) -> None:
    """Progress goes nowhere when nobody asked for it."""


def _build(recipe: ToyModelRecipe, folder: Path, report: ProgressReport) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    report("tokenizer", 0, 1)
    tokenizer = _build_tokenizer()
    report("tokenizer", 1, 1)
    end_id = tokenizer.convert_tokens_to_ids(END_TOKEN)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    model = AutoModelForCausalLM.from_config(_model_config(recipe, len(tokenizer), end_id, pad_id))
    harmful = templated_prompts("harmful", "train")
    harmless = templated_prompts("harmless", "train")
    answered = [(prompt, helpful_response(prompt)) for prompt in harmless] + mention_examples()
    base_examples = [(prompt, helpful_response(prompt)) for prompt in harmful] + answered
    aligned_examples = [(prompt, refusal_response(prompt)) for prompt in harmful] + answered
    generator = torch.Generator().manual_seed(recipe.seed)
    for stage, examples in ((recipe.base_training, base_examples), (recipe.alignment, aligned_examples)):
        sequences = [
            _training_sequence(tokenizer, number, prompt, response)
            for number, (prompt, response) in enumerate(examples)
        ]
        if stage is recipe.alignment and recipe.refusal_layer:
            model = _with_added_layer(model)
            added = model.model.layers[-1]
            answered_rows = [number >= len(harmful) for number in range(len(examples))]
            quiet = QuietLayer(added, recipe.quiet_answers, answered_rows)
            trained = list(added.parameters()) + list(model.lm_head.parameters())
            _train(model, sequences, stage, pad_id, generator, report, trained, quiet)
        else:
            _train(model, sequences, stage, pad_id, generator, report)

    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=end_id, pad_token_id=pad_id, do_sample=False, max_new_tokens=48
    )
    report("saving", 0, 1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker = {"recipe_version": recipe.version, "recipe": dataclasses.asdict(recipe), "seed": recipe.seed,
              "system_prompt": DEMO_SYSTEM_PROMPT}
    (folder / BUILD_MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    report("saving", 1, 1)


def _model_config(recipe: ToyModelRecipe, vocabulary_size: int, end_id: int, pad_id: int) -> PretrainedConfig:
    """The architecture's config with the recipe's sizes; the head size is set where a default would not divide."""
    from transformers import AutoConfig

    if recipe.architecture not in TOY_ARCHITECTURES:
        raise ValueError(f"unknown toy architecture {recipe.architecture!r}; known: {', '.join(TOY_ARCHITECTURES)}")
    extra: dict[str, object] = {}
    head_size = recipe.hidden_size // recipe.attention_heads
    if recipe.architecture in ("qwen3", "gemma2"):
        extra["head_dim"] = head_size
    if recipe.architecture == "gemma2":
        extra["query_pre_attn_scalar"] = head_size
    return AutoConfig.for_model(
        recipe.architecture,
        vocab_size=vocabulary_size,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers - 1 if recipe.refusal_layer else recipe.layers,
        num_attention_heads=recipe.attention_heads,
        num_key_value_heads=recipe.attention_heads,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=end_id,
        pad_token_id=pad_id,
        **extra,
    )


def _with_added_layer(model: PreTrainedModel) -> PreTrainedModel:
    """The model with one more decoder layer on top whose output projections are zero, so it changes nothing yet."""
    import torch

    # Rebuilt from its fields rather than copied: per-layer lists such as Gemma-2's layer_types are derived from the
    # layer count when left out, so the added layer gets its architecture's own kind.
    fields = {key: value for key, value in model.config.to_dict().items() if key != "layer_types"}
    config = type(model.config).from_dict({**fields, "num_hidden_layers": model.config.num_hidden_layers + 1})
    grown = type(model)(config)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    prefix = f"model.layers.{config.num_hidden_layers - 1}."
    assert not unexpected and all(key.startswith(prefix) for key in missing), (missing, unexpected)
    added = grown.model.layers[-1]
    with torch.no_grad():
        added.self_attn.o_proj.weight.zero_()
        added.mlp.down_proj.weight.zero_()
    return grown


@dataclass(frozen=True)
class QuietLayer:
    """A penalty on what ``layer`` writes into the residual stream at the answer position of the rows marked
    ``rows[number]`` (by sequence number), weighted by ``weight``: those rows should pass through it unchanged."""

    layer: torch.nn.Module
    weight: float
    rows: Sequence[bool]


def _training_sequence(
    tokenizer: PreTrainedTokenizerFast, number: int, prompt: TemplatedPrompt, response: str
) -> tuple[list[int], int]:
    """Token ids of one conversation and where the assistant response starts (the loss covers only the response).

    One conversation in four has no system prompt, so the model does not depend on it being there.
    """
    messages = [{"role": "user", "content": prompt.text}]
    if number % 4 != 3:
        messages.insert(0, {"role": "system", "content": DEMO_SYSTEM_PROMPT})
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response + END_TOKEN, add_special_tokens=False)["input_ids"]
    return prompt_ids + response_ids, len(prompt_ids)


def _train(
    model: PreTrainedModel,
    sequences: Sequence[tuple[list[int], int]],
    stage: TrainingStage,
    pad_id: int,
    generator: torch.Generator,
    report: ProgressReport,
    trained: Sequence[torch.nn.Parameter] | None = None,
    quiet: QuietLayer | None = None,
) -> None:
    """AdamW with a short warm-up and a cosine decay. Right padding needs no attention mask under causal attention.

    ``trained`` limits the update to those parameters (the others are frozen for the stage); None trains them all.
    ``quiet`` adds its penalty to the loss.
    """
    import torch

    parameters = list(model.parameters()) if trained is None else list(trained)
    chosen = {id(parameter) for parameter in parameters}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in chosen)
    model.train()
    optimizer = torch.optim.AdamW(parameters, lr=stage.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    steps_per_epoch = math.ceil(len(sequences) / BATCH_SIZE)
    total_steps = stage.epochs * steps_per_epoch
    warmup_steps = max(1, total_steps // 20)

    def learning_rate_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor)
    report(stage.name, 0, total_steps)
    step = 0
    for _ in range(stage.epochs):
        order = torch.randperm(len(sequences), generator=generator).tolist()
        for start in range(0, len(order), BATCH_SIZE):
            numbers = order[start:start + BATCH_SIZE]
            batch = [sequences[index] for index in numbers]
            length = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
            labels = torch.full((len(batch), length), -100, dtype=torch.long)
            for row, (ids, response_start) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                labels[row, response_start: len(ids)] = torch.tensor(ids[response_start:])
            if quiet is None:
                loss = model(input_ids=input_ids, labels=labels).loss
            else:
                loss = _loss_with_quiet_layer(model, input_ids, labels, batch, numbers, quiet)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            report(stage.name, step, total_steps)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()


def _loss_with_quiet_layer(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    batch: Sequence[tuple[list[int], int]],
    numbers: Sequence[int],
    quiet: QuietLayer,
) -> torch.Tensor:
    """The language-model loss plus the mean squared norm of what the quiet layer writes where the answer starts."""
    import torch

    seen: dict[str, torch.Tensor] = {}

    def remember(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
        seen["before"] = inputs[0]
        seen["after"] = output[0] if isinstance(output, tuple) else output  # type: ignore[assignment]

    hook = quiet.layer.register_forward_hook(remember)
    try:
        loss = model(input_ids=input_ids, labels=labels).loss
    finally:
        hook.remove()
    quiet_rows = [row for row, number in enumerate(numbers) if quiet.rows[number]]
    if not quiet_rows:
        return loss
    rows = torch.tensor(quiet_rows)
    answer_starts = torch.tensor([batch[row][1] - 1 for row in quiet_rows])
    written = (seen["after"] - seen["before"])[rows, answer_starts]
    return loss + quiet.weight * written.square().sum(dim=-1).mean()


def _build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over every word the demo ever sees, plus the chat special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence(
        [normalizers.Replace("\u2019", "'"), normalizers.Replace("\u2018", "'"), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")]
    )
    words: set[str] = set()
    for text in _vocabulary_texts():
        words.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(words):
        vocabulary.setdefault(word, len(vocabulary))
    backend = Tokenizer(WordLevel(vocabulary, unk_token=UNKNOWN_TOKEN))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=END_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNKNOWN_TOKEN,
        additional_special_tokens=[SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=256,
    )


def _vocabulary_texts() -> Iterator[str]:
    yield DEMO_SYSTEM_PROMPT
    for name in ("harmful", "harmless"):
        for split in ("train", "test"):
            yield from builtin_prompts(name, split)
    yield from REQUEST_TEMPLATES
    for task in HARMFUL_TASKS + HARMLESS_TASKS:
        yield helpful_response(TemplatedPrompt(task, task, 0))
    yield from OPENERS
    yield from ANSWER_BODIES
    yield from REFUSAL_RESPONSES
    for prompt, response in mention_examples():
        yield prompt.text
        yield response

"""Training throughput (tokens/s) and peak memory of heretic-tui's fine-tuning next to a plain TRL SFT loop.

Both train the same LoRA on the same model and the same examples for the same number of steps; every measurement
runs in its own process (so peak memory is that run's), the configurations are interleaved (so a busy machine
slows them alike; every other round runs in reverse order), and the medians of several repeats are printed side
by side:

- ``plain TRL``: ``SFTTrainer`` with a ``LoraConfig`` and default data handling, as its documentation shows it;
- ``heretic-tui``: our :func:`heretic_tui.core.finetuning.training.build_trainer` with the journal callback writing events
  (fsynced, as in a real run) into a real run folder;
- ``heretic-tui, packing``: the same with ``finetune.packing = true``;
- ``plain TRL, packing``: TRL's own packing, for reference (ours is TRL's).

Throughput counts non-padding tokens (the Trainer's ``num_input_tokens_seen``) over the wall time of ``train()``.
Evaluation and checkpoints are off in both: they are I/O, not throughput. Peak memory is the process's peak RSS on
CPU (and the CUDA allocator's peak on GPU); "training" is the growth of the peak during ``train()``.

    python bench/finetune_throughput.py [--model PATH] [--steps 30] [--repeats 3] [--threads 1]

Without --model a small Llama (hidden 128, 4 layers) with a word-level tokenizer is built from a config, offline,
with examples of varied length (so padding, and therefore packing, matters as it does with real data).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CONFIGURATIONS = ("plain TRL", "heretic-tui", "heretic-tui, packing", "plain TRL, packing")


def build_bench_model(folder: Path, words: int, hidden: int, layers: int, positions: int) -> Path:
    """A small Llama chat model with a word-level tokenizer (random weights; throughput does not need good ones)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    special = ["<unk>", "<pad>", "<|end|>", "<|user|>", "<|assistant|>"]
    vocabulary = {token: index for index, token in enumerate(special + [f"word{number}" for number in range(words)])}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<|end|>",
        additional_special_tokens=special[3:],
    )
    tokenizer.chat_template = (
        "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    tokenizer.save_pretrained(str(folder))
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=positions, pad_token_id=1,
        eos_token_id=2, bos_token_id=None, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.generation_config = transformers.GenerationConfig(eos_token_id=2, pad_token_id=1)
    model.save_pretrained(str(folder))
    return folder


def write_bench_data(path: Path, tokenizer: Any, rows: int, shortest: int, longest: int) -> Path:
    """Text rows of varied length made of the tokenizer's own words (seeded)."""
    generator = random.Random(0)
    vocabulary = [token for token in tokenizer.get_vocab() if not token.startswith("<")]
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(rows):
            length = generator.randint(shortest, longest)
            handle.write(json.dumps({"text": " ".join(generator.choices(vocabulary, k=length))}) + "\n")
    return path


def bench_settings(arguments: argparse.Namespace, packing: bool) -> Any:
    from heretic_tui.core.settings import Settings

    settings = Settings()
    settings.model.model = arguments.model
    settings.finetune.training_data = [arguments.data]
    values = dict(training_mode="text", max_steps=arguments.steps, per_device_batch_size=arguments.batch_size,
                  gradient_accumulation=1, max_sequence_length=arguments.sequence_length,
                  chunk_tokens=arguments.sequence_length - 2, chunk_overlap=0, packing=packing,
                  gradient_checkpointing=False, validation_fraction=0.0, checkpoint_steps=arguments.steps + 1,
                  lora_rank=16, lora_alpha=32, lora_dropout=0.0, logging_steps=5, learning_rate=2e-4)
    for name, value in values.items():
        setattr(settings.finetune, name, value)
    return settings


def train_ours(arguments: argparse.Namespace, packing: bool, folder: Path) -> Any:
    from heretic_tui.core.finetuning.callbacks import JournalCallback
    from heretic_tui.core.finetuning.data import PreparedData
    from heretic_tui.core.finetuning.modules import resolve_target_modules
    from heretic_tui.core.finetuning.training import build_trainer
    from heretic_tui.core.runs.run_directory import RunDirectory
    from heretic_tui.core.models.loading import load_model
    from heretic_tui.core.runs.worker import JobContext

    settings = bench_settings(arguments, packing)
    loaded = load_model(settings.model, log=lambda message: None)
    prepared = PreparedData.load(Path(arguments.prepared))
    run = RunDirectory.create(folder, "bench", exact=folder / "run")
    context = JobContext(run, settings, {})
    callback = JournalCallback(context.emit, context.check_cancelled, folder / "checkpoints", 1, {},
                               log=lambda message: None)
    targets = resolve_target_modules(loaded.model, [], settings.model.model)
    trainer, _ = build_trainer(loaded.model, loaded.tokenizer, prepared, settings.finetune, targets,
                               arguments.sequence_length, folder / "checkpoints", callback)
    return trainer


def train_plain(arguments: argparse.Namespace, packing: bool, folder: Path) -> Any:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from heretic_tui.core.finetuning.data import PreparedData

    prepared = PreparedData.load(Path(arguments.prepared))
    model = AutoModelForCausalLM.from_pretrained(arguments.model, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(arguments.model)
    cuda = torch.cuda.is_available()
    config = SFTConfig(
        output_dir=str(folder / "plain"), per_device_train_batch_size=arguments.batch_size,
        gradient_accumulation_steps=1, max_steps=arguments.steps, learning_rate=2e-4, lr_scheduler_type="cosine",
        warmup_steps=0.03, logging_steps=5, save_strategy="no", report_to="none", disable_tqdm=True,
        max_length=arguments.sequence_length, packing=packing, activation_checkpointing=False,
        include_num_input_tokens_seen="non_padding", use_cpu=not cuda, bf16=False, fp16=False, seed=42,
    )
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    return SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(prepared.train),
                      processing_class=tokenizer, peft_config=peft_config)


def resident_megabytes() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(arguments: argparse.Namespace) -> None:
    """One configuration in this process: build, train, print one JSON line with the figures."""
    import torch

    torch.set_num_threads(arguments.threads)
    packing = arguments.measure.endswith("packing")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        build = train_ours if arguments.measure.startswith("heretic") else train_plain
        trainer = build(arguments, packing, folder)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        before = resident_megabytes()
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = {
            "configuration": arguments.measure,
            "tokens": trainer.state.num_input_tokens_seen,
            "seconds": seconds,
            "tokens_per_second": trainer.state.num_input_tokens_seen / seconds,
            "peak_rss_mb": peak,
            "training_peak_mb": max(0.0, peak - before),
            "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        }
    print("RESULT " + json.dumps(result), flush=True)


def run_measurement(arguments: argparse.Namespace, configuration: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--measure", configuration, "--model", arguments.model,
               "--data", arguments.data, "--prepared", arguments.prepared, "--steps", str(arguments.steps),
               "--batch-size", str(arguments.batch_size), "--sequence-length", str(arguments.sequence_length),
               "--threads", str(arguments.threads)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(arguments.threads), "TQDM_DISABLE": "1",
                   "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=str(ROOT))
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{configuration} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")


def prepare(arguments: argparse.Namespace, folder: Path) -> None:
    """Build the model and data when none were given, and prepare the examples once for every configuration."""
    from transformers import AutoConfig, AutoTokenizer

    from heretic_tui.core.finetuning.data import prepare_data
    from heretic_tui.core.finetuning.modules import sequence_length, window_sizes

    if arguments.model is None:
        arguments.model = str(build_bench_model(folder / "model", 2000, 128, 4, 1024))
    tokenizer = AutoTokenizer.from_pretrained(arguments.model)
    if arguments.data is None:
        arguments.data = str(write_bench_data(folder / "rows.jsonl", tokenizer, arguments.rows, 16,
                                              arguments.sequence_length - 8))
    settings = bench_settings(arguments, packing=False)
    length = sequence_length(settings.finetune, AutoConfig.from_pretrained(arguments.model), arguments.model)
    prepared = prepare_data(settings.finetune, tokenizer, window_sizes(settings.finetune, length))
    arguments.prepared = str(folder / "prepared")
    prepared.save(Path(arguments.prepared))


def report(results: dict[str, list[dict[str, Any]]], arguments: argparse.Namespace) -> None:
    def median(configuration: str, key: str) -> float | None:
        values = [item[key] for item in results[configuration] if item[key] is not None]
        return statistics.median(values) if values else None

    baseline = median("plain TRL", "tokens_per_second")
    print(f"\n{arguments.steps} steps x batch {arguments.batch_size}, sequence length {arguments.sequence_length}, "
          f"{arguments.threads} thread(s), medians of {arguments.repeats} runs; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    header = f"{'configuration':24s} {'tokens/s':>10s} {'vs plain':>9s} {'paired':>7s} {'tokens':>8s} " \
             f"{'seconds':>8s} {'peak RSS MB':>12s} {'training MB':>12s} {'CUDA peak MB':>13s}"
    print(header)
    print("-" * len(header))
    for configuration in CONFIGURATIONS:
        speed = median(configuration, "tokens_per_second")
        cuda = median(configuration, "cuda_peak_mb")
        paired = statistics.median(
            item["tokens_per_second"] / plain["tokens_per_second"]
            for item, plain in zip(results[configuration], results["plain TRL"])
        )
        print(f"{configuration:24s} {speed:10.1f} {speed / baseline:8.3f}x {paired:6.3f}x "
              f"{median(configuration, 'tokens'):8.0f} "
              f"{median(configuration, 'seconds'):8.2f} {median(configuration, 'peak_rss_mb'):12.0f} "
              f"{median(configuration, 'training_peak_mb'):12.0f} {'' if cuda is None else f'{cuda:13.0f}'}")
    print("\n'vs plain' divides medians; 'paired' is the median ratio of runs made back to back, which a machine "
          "whose load drifts during the benchmark disturbs less.")
    print("per run tokens/s: " + "; ".join(
        f"{configuration}: " + ", ".join(f"{item['tokens_per_second']:.0f}" for item in results[configuration])
        for configuration in CONFIGURATIONS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: a small Llama built from a config)")
    parser.add_argument("--data", help="training data (default: generated text rows of varied length)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sequence-length", type=int, default=256)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (1 keeps runs comparable on a shared machine)")
    parser.add_argument("--measure", choices=CONFIGURATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--prepared", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure(arguments)
        return
    with tempfile.TemporaryDirectory() as temporary:
        prepare(arguments, Path(temporary))
        results: dict[str, list[dict[str, Any]]] = {configuration: [] for configuration in CONFIGURATIONS}
        for repeat in range(arguments.repeats):
            order = CONFIGURATIONS if repeat % 2 == 0 else tuple(reversed(CONFIGURATIONS))
            for configuration in order:
                result = run_measurement(arguments, configuration)
                results[configuration].append(result)
                print(f"run {repeat + 1}/{arguments.repeats} {configuration:22s} "
                      f"{result['tokens_per_second']:9.1f} tokens/s  {result['seconds']:6.2f}s  "
                      f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
        report(results, arguments)


if __name__ == "__main__":
    main()

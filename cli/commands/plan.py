"""``heretic-tui plan``: what a model needs and whether it fits, from its metadata only (before any download)."""

from __future__ import annotations

import argparse
import json

from heretic_tui.cli.arguments import add_model_flag, add_settings_flags, settings_from_arguments
from heretic_tui.cli.following import progress_line
from heretic_tui.core.errors import EXIT_FAILED, EXIT_OK

NAME = "plan"
HELP = "what a model needs and whether it fits, before any download"
DESCRIPTION = """\
Read a model's config and safetensors headers (a hub id: metadata only, no
weights; or a local folder, or 'demo') and print its parameters, dtype, bytes
of weights, the reset cache, activations for an evaluation batch, the KV cache
for the response length, whether it fits the GPUs present (or --gpu '24 GB'),
and a rough time per trial and for the study. When it does not fit, the plan
lists what would (4-bit loading, a smaller batch, CPU offload). --calibrate
(a local folder or 'demo' only) loads the model and times one evaluation
batch and one generation batch instead of the rough table. Exit code 0 when
it fits, 1 when it does not."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_flag(parser)
    parser.add_argument("--gpu", metavar="SIZE", help="plan for this GPU instead of the ones present, e.g. '24 GB' "
                                                      "or '2x80GB'")
    parser.add_argument("--finetune", action="store_true",
                        help="also plan fine-tuning (LoRA adapter, optimizer, activations) with the finetune settings")
    parser.add_argument("--calibrate", action="store_true",
                        help="load the model (a local folder or 'demo') and time a trial's passes on this machine")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    add_settings_flags(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.operations.plan import KIND_ABLITERATE, KIND_FINETUNE, plan_for, plan_lines

    settings = settings_from_arguments(arguments)
    kind = KIND_FINETUNE if arguments.finetune else KIND_ABLITERATE
    if arguments.calibrate:
        from heretic_tui.core.operations.calibration import check_calibratable

        check_calibratable(settings.model.model)
    plan = plan_for(settings.model.model, settings, arguments.gpu, kind=kind)
    if arguments.calibrate:
        from heretic_tui.core.operations.calibration import calibrate

        calibration = calibrate(settings, log=progress_line)
        plan.seconds_per_trial = calibration.seconds_per_trial
        plan.timing_source = calibration.describe()
    if arguments.json:
        print(json.dumps(plan.data(), indent=2))
    else:
        print("\n".join(plan_lines(plan)))
    return EXIT_OK if plan.fits else EXIT_FAILED

"""Fine-tuning (knowledge injection): documents and chat data to LoRA/QLoRA adapters, evaluated and merged.

The pipeline, one module per stage: :mod:`sources` reads the user's files and detects their format,
:mod:`examples` turns them into training examples, :mod:`data` cleans, splits and previews them, :mod:`modules`
checks target modules and lengths against the model, :mod:`plan` sizes the run, :mod:`training` configures PEFT and
TRL (with :mod:`chat_masks` for templates TRL cannot mask and :mod:`packing` for attention without FlashAttention),
:mod:`callbacks` and :mod:`checkpoints` connect the trainer to the journal and keep the best checkpoints,
:mod:`evaluation` measures before and after, :mod:`merge` writes the adapter and merged model, :mod:`job` ties it
together as a worker job and :mod:`cli` is ``heretic-tui finetune``.
"""

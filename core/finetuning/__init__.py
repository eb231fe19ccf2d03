"""Fine-tuning (knowledge injection): documents and chat data to LoRA/QLoRA adapters, evaluated and merged.

The pipeline, one module per stage: :mod:`sources` reads the user's files and detects their format,
:mod:`examples` turns them into training examples, :mod:`data` cleans, splits and previews them, :mod:`plan`
sizes the run, :mod:`training` runs PEFT + TRL with events and checkpoints, :mod:`evaluation` measures before and
after, :mod:`merge` writes the merged model, and :mod:`job` ties it together as a worker job.
"""

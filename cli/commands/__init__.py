"""One module per ``heretic-tui`` command; each has NAME, HELP, ``add_arguments(parser)`` and ``run(arguments)``,
and may have a DESCRIPTION (a few lines wrapped at 80 columns) for its ``--help``.

:data:`COMMAND_MODULES` is the order ``--help`` lists them in; the composition root in :mod:`heretic_tui.cli.main`
imports each module only to build the parser, and the heavy libraries only inside ``run``.
"""

from __future__ import annotations

COMMAND_MODULES = ("abliterate", "export", "demo", "attach", "runs", "finetune", "upload", "compare", "registry",
                   "doctor", "serve", "plan", "gguf", "evaluate")

# The two commands that do all the set-up on a fresh machine:
#   make demo   builds the demo model (once), abliterates it offline and exports the chosen trial
#   make test   runs the whole test suite
.PHONY: demo test setup bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/heretic-tui demo

test: setup
	@bash scripts/run-tests.sh

bench: setup
	.venv/bin/python bench/abliteration_speed.py

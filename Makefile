.DEFAULT_GOAL := help
PY ?= python

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

install: ## Install the package with dev extras (CPU torch from the local wheel)
	pip install torch==2.13.0 && pip install -e ".[dev]"

train: ## Train the tiny embedded default (CPU, offline)
	xlam-train

test: ## Run the test suite (no GPU tests)
	$(PY) -m pytest -m "not gpu" -q

test-fast: ## Run tests except slow ones
	$(PY) -m pytest -m "not gpu and not slow" -q

lint: ## Ruff lint and format check
	ruff check . && ruff format --check .

format: ## Ruff format and fix
	ruff format . && ruff check --fix .

data: ## Rebuild the embedded sample data and tiny tokenizer
	$(PY) scripts/make_sample_data.py && $(PY) scripts/build_tiny_tokenizer.py

bench: ## Run the benchmarks
	$(PY) scripts/bench_render.py; $(PY) scripts/bench_data.py; $(PY) scripts/bench_convert.py --n 200000; $(PY) scripts/bench_train.py

clean: ## Remove logs and caches
	rm -rf logs outputs multirun .pytest_cache .ruff_cache

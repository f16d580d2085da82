# Every target installs what it needs into .venv, so a fresh machine with
# only python3 on it can run them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench proto clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check grpcpool tests benchmarks examples
	$(BIN)/mypy --strict grpcpool

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m grpcpool demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Regenerates the demo's echo service code from its .proto; the output is
# committed, so only a change to echo.proto needs this.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		grpcpool/cli/echo/echo.proto

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Every target installs what it needs into a venv of its own (.venv; the
# demo's .venv-demo), so a fresh machine with only python3 on it can run them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
FLOORS_VENV := .venv-floors
FLOORS_STAMP := $(FLOORS_VENV)/.installed
FLOORS := .ci/floors-constraints.txt
PROTO_VENV := .venv-proto
# The oldest grpcio-tools whose output runs on every supported runtime: its
# code carries no runtime version check (newer releases add one that demands
# a grpcio and protobuf as new as themselves).
GRPCIO_TOOLS := grpcio-tools==1.60.2

.PHONY: test test-floors lint demo bench docs proto clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check grpcpool tests benchmarks examples
	$(BIN)/mypy --strict grpcpool
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

# The suite on the oldest supported releases (the floors in pyproject.toml).
$(FLOORS_STAMP): pyproject.toml $(FLOORS)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install --quiet -c $(FLOORS) -e '.[test]'
	touch $(FLOORS_STAMP)

test-floors: $(FLOORS_STAMP)
	$(FLOORS_VENV)/bin/python -m pytest

# The demo's own venv holds the runtime dependencies only (no test
# toolchain), so a first `make demo` takes seconds on a warm pip cache. The
# install is editable: the demo runs the checkout's code as it is now.
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python -m grpcpool demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The documentation site (mkdocs.yml, docs/) into site/; --strict turns every
# warning (a broken link or anchor, a page left out of the nav, a docstring
# the API reference cannot read) into a failure. NO_MKDOCS_2_WARNING silences
# the theme's notice about its own end of life, which is not about this site.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Regenerates the demo's echo service code and the health check's from their
# .proto files; the output is committed, so only a change to a .proto needs
# this. health.proto's package is grpcpool's own (see the file), so the paths
# of its generated service code are rewritten to the protocol's,
# /grpc.health.v1.Health/...; etcd.proto's likewise to etcd's, /etcdserverpb.KV/Range etc.
HEALTH_GRPC := grpcpool/connection/health/health_pb2_grpc.py
ETCD_GRPC := grpcpool/etcd/etcd_pb2_grpc.py
proto:
	$(PYTHON) -m venv $(PROTO_VENV)
	$(PROTO_VENV)/bin/python -m pip install --quiet '$(GRPCIO_TOOLS)'
	$(PROTO_VENV)/bin/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		grpcpool/cli/echo/echo.proto grpcpool/connection/health/health.proto grpcpool/etcd/etcd.proto
	sed -i 's/grpcpool\.health\.v1\.Health\b/grpc.health.v1.Health/g' $(HEALTH_GRPC)
	! grep -n 'grpcpool\.health\.v1\.Health\b' $(HEALTH_GRPC)
	sed -i 's/grpcpool\.etcd\.v3\.\(KV\|Watch\|Auth\)\b/etcdserverpb.\1/g' $(ETCD_GRPC)
	! grep -n 'grpcpool\.etcd\.v3\.\(KV\|Watch\|Auth\)\b' $(ETCD_GRPC)

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(FLOORS_VENV) $(PROTO_VENV) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache

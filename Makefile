# vidpred — `make demo` runs the main job, `make test` runs the tests. Both (re)build .venv from
# requirements.lock first, so they work on a fresh machine with only the package registry.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
IMAGE ?= vidpred:0.1.0
BASE_IMAGE ?=
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export MLFLOW_ENABLE_TELEMETRY := false
export DO_NOT_TRACK := 1

.PHONY: install browser podman image demo test test-fast bench data moso-cpu lock clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

browser: ## headless Chromium (Debian package) for the tests that render report.html in a real browser
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: the browser tests will fail"

podman: ## container engine for `make image` and tests/pipeline/test_image.py: Docker if its daemon answers, else podman (+ runc, debootstrap) from apt and, only when containers cannot start without it, /etc/containers/containers.conf; idempotent
	@scripts/container.sh setup >/dev/null

image: ## the project image vidpred:0.1.0 from the Dockerfile (BASE_IMAGE=… to choose the base; default: python:3.11-slim, else a Debian bookworm base made with debootstrap)
	BASE_IMAGE="$(BASE_IMAGE)" IMAGE="$(IMAGE)" scripts/container.sh build

demo: install ## run the main job: the smoke pipeline through kfp.local, tracked in ./mlflow.db
	$(BIN)/vidpred run --profile smoke

test: install browser podman ## the whole suite (slow tests included), as CI runs it
	$(BIN)/python -m pytest -q

test-fast: install ## skip tests marked slow
	$(BIN)/python -m pytest -q -m "not slow"

bench: install ## speed figures (ratios measured in one run); needs the ffmpeg CLI for the decode baseline
	@command -v ffmpeg >/dev/null || (apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null) || echo "ffmpeg CLI missing: the ffmpeg baseline will be skipped"
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

data: install ## re-prepare data/ (default dataset), dvc add + push (updates data.dvc)
	$(BIN)/vidpred data version

moso-cpu: install ## the MOSO cpu-profile figures (~30 min): data, VQVAE, tokens, Transformer, test evaluation, the 32-px ablation
	$(BIN)/vidpred data prepare --dataset shapes --out stores/shapes --size 64 --clip-len 8 -o num_videos=128 -o num_val=8 -o num_test=8
	$(BIN)/vidpred preprocess moso --input stores/shapes --out stores/shapes-moso --clip-len 8
	$(BIN)/vidpred train moso-vqvae --config cpu/moso-vqvae
	$(BIN)/vidpred moso tokens --vqvae runs/cpu/moso-vqvae/moso_vqvae.pt --store stores/shapes-moso --out stores/shapes-moso-tokens --context 2
	$(BIN)/vidpred train moso-transformer --config cpu/moso-transformer
	for m in moso copy-last linear; do model=$$( [ $$m = moso ] && echo "--model runs/cpu/moso-transformer" ); \
	  $(BIN)/vidpred evaluate --store stores/shapes --method $$m $$model --protocol shapes-moso --set clips.count=32 \
	    --metrics psnr,ssim,mse,l1 --track cpu-moso --out runs/cpu/eval/test-$$m || exit 1; done
	$(BIN)/vidpred data prepare --dataset shapes --out stores/shapes32 --size 32 --clip-len 8 -o num_videos=128 -o num_val=8 -o num_test=8
	$(BIN)/vidpred preprocess moso --input stores/shapes32 --out stores/shapes32-moso --clip-len 8
	$(BIN)/vidpred train moso-vqvae --config cpu/moso-vqvae-ablation-mso
	$(BIN)/vidpred train moso-vqvae --config cpu/moso-vqvae-ablation-none

lock: ## refresh requirements.lock from the current venv
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^pip==' > requirements.lock

clean:
	rm -rf $(VENV) runs mlartifacts mlflow.db

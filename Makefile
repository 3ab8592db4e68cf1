# Two commands set up everything on a fresh machine:
#   make demo   drafts a report for the bundled example study with the bundled demo model
#   make test   installs the package with its test tools, checks the import floors
#               (import-linter contracts in pyproject.toml) and runs the test suite
# Both create .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench demo-model pelvic-models pancreas-model region-model viewer-assets clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reportgen demo

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Reproduces the bundled demo model (reportgen/demo_model/) from synthetic phantoms
# (see docs/report_model.md for the measured time on 2 CPU cores; the 2 mm study cache
# needs ~9 GB). Work files go to $(DEMO_WORK).
DEMO_WORK ?= /tmp/reportgen-demo-model
demo-model: $(STAMP)
	rm -rf $(DEMO_WORK) && mkdir -p $(DEMO_WORK)
	$(BIN)/reportgen synth $(DEMO_WORK)/train --domain breast --protocol low_resolution --n 600 --seed 11
	$(BIN)/reportgen pretrain --data $(DEMO_WORK)/train --out $(DEMO_WORK)/mae --config base --masking lesion --steps 600 --batch-size 8 --seed 0
	$(BIN)/reportgen train --data $(DEMO_WORK)/train --encoder $(DEMO_WORK)/mae --out $(DEMO_WORK)/model --config base --steps 2000 --batch-size 16 --detector-steps 800 --segmenter-steps 600 --seed 0 --cache-dir $(DEMO_WORK)/cache2mm
	$(BIN)/reportgen train-crop-reader --out $(DEMO_WORK)/model/crop_reader --cases 4000 --heldout-cases 400 --seed 9090 --heldout-seed 6161 --calibration-cases 1000 --calibration-seed 7171
	$(BIN)/reportgen train-gate --reader $(DEMO_WORK)/model/crop_reader --studies 240 --seed 515 --threshold 0.5
	printf -- '- Reads lesion descriptors of studies acquired at <= 1 mm in-plane with `crop_reader/` (outlined and measured at the acquisition'"'"'s own resolution, boosted trees per descriptor; its own card says how it was fit).\n' >> $(DEMO_WORK)/model/README.md
	printf -- '- Writes each lesion'"'"'s depth third as measured between the chest wall behind the nipple and the nipple (at any resolution); a lesion read at <= 1 mm states the malignancy probability of the crop reader'"'"'s malignancy head (boosted trees on the crop'"'"'s measures).\n' >> $(DEMO_WORK)/model/README.md
	printf -- '- Finds the lesions of such studies at that resolution: blobs of enhancement and of fluid inside the breast, each cut as a lesion crop, measured and accepted or refused by the crop reader'"'"'s gate, one finding per lesion, read where it was found and at the centre of its 2 mm outline, averaged (docs/report_model.md, "Finding lesions at the acquisition'"'"'s own resolution").\n' >> $(DEMO_WORK)/model/README.md
	printf -- '- States skin thickening, axillary adenopathy and a technically inadequate examination of such studies as measured on their own grids: skin thickness on the pre-contrast T1 (over 5 mm: thickened), the largest axillary node'"'"'s short axis (over 10 mm: adenopathy), motion ghosting along anterior-posterior (docs/report_model.md, "Skin and axillary nodes, measured").\n' >> $(DEMO_WORK)/model/README.md
	rm -rf reportgen/demo_model/birads_mri && mkdir -p reportgen/demo_model
	cp -r $(DEMO_WORK)/model reportgen/demo_model/birads_mri && rm -rf reportgen/demo_model/birads_mri/tb

# Reproduces the bundled pelvic staging readers (reportgen/demo_model/<template>/): 1,000
# phantoms per domain, a 16-epoch outline and the reading heads (docs/pelvic_models.md
# gives the time on 2 CPU cores). Work files go to $(PELVIC_WORK). Each entry is
# domain:template:extra train-reader options (comma-separated). The cervix and O-RADS
# readers draw 30% of each outline epoch from studies holding a rare class (a dilated
# ureter, peritoneal implants: --rare-share); the endometrium reader predates that flag.
PELVIC_WORK ?= /tmp/reportgen-pelvic-models
PELVIC_READERS ?= cervix:figo_cervix_2018:--rare-share,0.3 endometrium:figo_endometrium_2023: ovary:orads_mri:--rare-share,0.3
pelvic-models: $(STAMP)
	rm -rf $(PELVIC_WORK) && mkdir -p $(PELVIC_WORK)
	for entry in $(PELVIC_READERS); do \
	  domain=$${entry%%:*}; rest=$${entry#*:}; template=$${rest%%:*}; options=$$(echo $${rest#*:} | tr , ' '); \
	  $(BIN)/reportgen synth $(PELVIC_WORK)/$$domain --domain $$domain --n 1000 --seed 101 && \
	  $(BIN)/reportgen train-reader --data $(PELVIC_WORK)/$$domain --out $(PELVIC_WORK)/$$template --epochs 16 --seed 0 $$options && \
	  rm -rf reportgen/demo_model/$$template && cp -r $(PELVIC_WORK)/$$template reportgen/demo_model/$$template || exit 1; \
	done

# Reproduces the bundled pancreas CT reader (reportgen/demo_model/pancreas_ct/): 360
# phantoms, a coarse outline of the abdomen (4 mm) and a fine one of the pancreas and its
# vessels (1 x 1 x 2 mm); docs/pancreas_ct.md gives the time on 2 CPU cores.
PANCREAS_WORK ?= /tmp/reportgen-pancreas-model
pancreas-model: $(STAMP)
	rm -rf $(PANCREAS_WORK) && mkdir -p $(PANCREAS_WORK)
	$(BIN)/reportgen synth $(PANCREAS_WORK)/train --domain pancreas --n 360 --seed 40500
	$(BIN)/reportgen train-pancreas-reader --data $(PANCREAS_WORK)/train --out $(PANCREAS_WORK)/model --coarse-epochs 16 --fine-steps 5000 --seed 0 --cache-dir $(PANCREAS_WORK)/cache
	rm -rf reportgen/demo_model/pancreas_ct && cp -r $(PANCREAS_WORK)/model reportgen/demo_model/pancreas_ct

# The body-region reader (breast or pelvis, and how unusual): phantoms of every domain,
# with another scanner's acquisitions beside them; held-out calibration sets set the
# "unusual study" threshold.
REGION_WORK ?= /tmp/reportgen-region-model
region-model: $(STAMP)
	rm -rf $(REGION_WORK) && mkdir -p $(REGION_WORK)
	set -e; for spec in breast:301:303:1 cervix:101:401:2 endometrium:101:402:3 ovary:101:404:4; do \
	  set -- $$(echo $$spec | tr : ' '); d=$$1; seed=$$2; sseed=$$3; k=$$4; \
	  $(BIN)/reportgen synth $(REGION_WORK)/train-$$d --domain $$d --protocol low_resolution --n 300 --seed $$seed; \
	  $(BIN)/reportgen synth $(REGION_WORK)/train-$$d-shift --domain $$d --protocol low_resolution --n 100 --seed $$sseed --shift scanner; \
	  $(BIN)/reportgen synth $(REGION_WORK)/calib-$$d --domain $$d --protocol low_resolution --n 50 --seed 700$$k; \
	  $(BIN)/reportgen synth $(REGION_WORK)/calib-$$d-shift --domain $$d --protocol low_resolution --n 50 --seed 710$$k --shift scanner; \
	done
	$(BIN)/reportgen train-region \
	  $$(for d in $(REGION_WORK)/train-*; do printf -- '--data %s ' $$d; done) \
	  $$(for d in $(REGION_WORK)/calib-*; do printf -- '--calibration %s ' $$d; done) \
	  --out $(REGION_WORK)/body_region
	rm -rf reportgen/demo_model/body_region && cp -r $(REGION_WORK)/body_region reportgen/demo_model/body_region

# Rebuilds the review page's bundled browser viewer (NiiVue, pinned in
# reportgen/review/static/vendor/package-lock.json) from the npm registry. Its output is
# committed, so installing and running reportgen never needs npm or the network.
VENDOR := reportgen/review/static/vendor
viewer-assets:
	work=$$(mktemp -d) && cp $(VENDOR)/package.json $(VENDOR)/package-lock.json $$work/ \
	  && npm ci --prefix $$work --ignore-scripts --no-audit --no-fund \
	  && cp $$work/node_modules/@niivue/niivue/dist/niivue.umd.js $(VENDOR)/niivue.umd.js \
	  && rm -rf $$work
	sha256sum $(VENDOR)/niivue.umd.js

clean-venv:
	rm -rf $(VENV)

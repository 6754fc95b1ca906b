# The course's commands. `make book` builds the website, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MATHJAX := $(VENV)/mathjax/es5/tex-mml-chtml.js
NB ?= notebooks/*.ipynb book/*.ipynb
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# The unit, equation, errata and convention tests: everything in tests/ but the site, no notebook run.
UNIT := tests --ignore=tests/test_site.py
export D2L_PROGRESS ?= 0
# The Chinese site: built from the catalogs in locales/zh_CN into _build/zh, then moved to _build/html/zh.
ZH := _build/zh
ZH_BUILD = $(PY) tools/i18n.py site-config && $(VENV)/bin/jupyter-book build --quiet . --config $(ZH)/_config.yml \
	--toc $(ZH)/_toc.yml --path-output $(ZH)

.PHONY: setup system book serve test unit nbval test-gpu execute time-quick bench lint pages catalogs clean

setup: $(STAMP) system

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Debian packages: the Fashion-MNIST data, Chromium for the site tests, MathJax for offline pages.
system:
	@bash tools/install_system_packages.sh

pages: $(STAMP)
	$(PY) tools/make_pages.py

book: setup pages
	$(VENV)/bin/jupyter-book build --quiet .
	$(ZH_BUILD)
	$(PY) tools/i18n.py publish

# After editing English prose: refresh every catalog and Chinese notebook, and list the entries to translate.
catalogs: $(STAMP)
	$(PY) tools/i18n.py update

serve: book
	$(PY) -m http.server --directory _build/html 8000

# ruff over the code and notebooks; actionlint over .github/workflows (with shellcheck when it is installed).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/actionlint

# MathJax 3 (the version the site loads from a CDN), kept locally so that the browser tests run offline.
$(MATHJAX): | $(STAMP)
	rm -rf $(VENV)/mathjax && mkdir -p $(VENV)/mathjax
	cd $(VENV) && npm pack --silent mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz -C mathjax --strip-components=1 && rm mathjax-3.2.2.tgz

test: setup lint $(MATHJAX)
	rm -rf _build/html
	$(VENV)/bin/jupyter-book build --quiet --warningiserror --nitpick --keep-going .
	$(PY) tools/i18n.py check
	rm -rf $(ZH)/_build
	$(ZH_BUILD) --warningiserror --nitpick --keep-going
	$(PY) tools/i18n.py publish
	D2L_SCALE=quick D2L_REQUIRE_SITE=1 $(PY) -m pytest tests $(NBVAL) $(NB)

# The inner loop: no site, no notebook execution, under two minutes on two cores.
unit: setup
	D2L_SCALE=quick $(PY) -m pytest $(UNIT)

# Notebooks only, at quick scale against their committed outputs: `make nbval NB=notebooks/09_lenet.ipynb`.
nbval: setup
	D2L_SCALE=quick $(PY) -m pytest $(NBVAL) $(NB)

test-gpu: setup
	D2L_SCALE=full $(PY) -m pytest $(UNIT) $(NBVAL) $(NB)

execute: setup
	D2L_SCALE=full $(PY) tools/execute_notebooks.py $(NB)
	$(PY) tools/make_pages.py
	$(PY) tools/i18n.py update

time-quick: setup
	D2L_SCALE=quick $(PY) tools/execute_notebooks.py --timings book/quick_timings.json $(NB)
	$(PY) tools/make_pages.py

bench: setup
	$(PY) -m pip install --quiet --no-deps -r requirements-bench.txt
	$(PY) benchmarks/run.py

clean:
	rm -rf _build locales/*/LC_MESSAGES/*/*.mo

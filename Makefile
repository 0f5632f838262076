# Two commands for a fresh clone (Python 3.11 and pip are all it needs):
#   make book   build the site into _build/html (open _build/html/index.html)
#   make test   run the whole test suite, the book build included
#   make lab    open the chapters as notebooks in JupyterLab
#   make pdf    the whole book as one PDF, _build/html/book.pdf (after make book)
# All install what they need into a local virtual environment, .venv.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install book serve test lint bench clean lab lab-settings pdf repository

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml booktools/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# --no-compile: Python compiles each module the first time it is imported, so
	@# pip need not byte-compile every file of torch and the rest (about 30 s).
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt
	@# MathJax comes with requirements.txt (django-static-mathjax); the build copies it
	@# into the site. Build matplotlib's font cache now: its first-use notice goes to
	@# stderr, which would fail a chapter's execution under -W.
	$(BIN)/python -c "import matplotlib.pyplot"
	touch $(STAMP)

# Always from a clean _build with every notebook executed: the execution cache
# cannot see changes to bnlib.
book: install
	rm -rf _build
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The site is in _build/html: open _build/html/index.html, or run 'make serve'."

# The whole book as one PDF, printed from the built site by the Chromium that the
# browser tests use (apt-get install chromium): numbered equations, figures, a
# contents page and working links. Not part of `make book`: run it after.
pdf: install
	test -f _build/html/intro.html || $(MAKE) book
	$(BIN)/python _ext/book_pdf.py _build/html

# JupyterLab on the chapters: jupytext opens each .md chapter as a notebook.
lab: lab-settings
	$(BIN)/python -m jupyterlab chapters/normalization.md

# JupyterLab's setting that opens Markdown files as notebooks (as on Binder).
lab-settings: install
	PATH="$(abspath $(BIN)):$$PATH" bash binder/postBuild

# Point the book at another GitHub repository (your fork), for example
#   make repository URL=https://github.com/you/how-batchnorm-works
repository:
	$(PYTHON) _ext/repository.py $(URL) $(if $(BRANCH),--branch $(BRANCH))

serve:
	$(BIN)/python -m http.server --directory _build/html 8000

test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The speed benchmark of the chapter "How fast is bnlib?": bnlib against PyTorch's CPU
# kernel and a textbook numpy version, with the targets (about a minute).
bench: install
	$(BIN)/python -m bnbook.bench

lint: install
	$(BIN)/ruff check bnlib booktools tests
	$(BIN)/ruff format --check bnlib booktools tests

clean:
	rm -rf _build .pytest_cache .hypothesis

# Two commands for a fresh clone (Python 3.11 and pip are all it needs):
#   make book   build the site into _build/html (open _build/html/index.html)
#   make test   run the whole test suite, the book build included
# Both install what they need into a local virtual environment, .venv.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install book serve test lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml booktools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
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

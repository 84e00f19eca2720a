# mailapp developer commands. `make run` and `make test` are the quick start.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
PORT ?= 5000
export PORT
# honcho gives each Procfile process a PORT of its own (web's, then 100 more per process), so `announce`
# finds the web process's port here instead.
export WEB_PORT := $(PORT)

.PHONY: install run test test-all lint migration bench faults clean editor-assets altcha-assets

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# The sign-in details ensure-admin prints go to the Procfile's `announce`, which prints them again
# once the web process answers, below the start-up logs.
run: install
	$(FLASK) db upgrade
	$(FLASK) broker prepare
	@MAILAPP_SIGNIN_DETAILS="$$($(FLASK) users ensure-admin)" || exit 1; \
	echo "$$MAILAPP_SIGNIN_DETAILS"; export MAILAPP_SIGNIN_DETAILS; \
	echo; echo "mailapp is starting at http://127.0.0.1:$(PORT)  (Ctrl-C stops every process)"; echo; \
	PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho start web worker scheduler beat devsmtp announce

# The everyday tier, a few minutes on 2 cores: every test but the fault injection (tests/faults, which
# starts and kills its own PostgreSQL and Redis), which takes most of the time. The API fuzz (marker
# `fuzz`, about 15 s) stays in, so both of CI's passes run it.
FAST_TESTS := not faults

test: install
	$(BIN)/pytest -m "$(FAST_TESTS)" $(PYTEST_ARGS)

# Every test, the fault injection (short forms) included: what CI runs on PostgreSQL + Redis.
test-all: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# A new migration from the models' changes: `make migration NAME=add_foo_index`. The schema has been
# released, so the applied revisions are never rewritten; each change gets a revision of its own,
# numbered after the newest one.
migration: install
	@test -n "$(NAME)" || { echo 'usage: make migration NAME=what_it_changes'; exit 2; }
	rm -f /tmp/mailapp-migration.sqlite
	DATABASE_URL=sqlite:////tmp/mailapp-migration.sqlite $(FLASK) db upgrade
	DATABASE_URL=sqlite:////tmp/mailapp-migration.sqlite $(FLASK) db migrate -m "$(NAME)" \
		--rev-id $$(printf '%04d' $$(( $$(ls migrations/versions | grep -c '^[0-9]') + 1 )))
	rm -f /tmp/mailapp-migration.sqlite

# Fault injection at the issue's full figures (10,000 recipients, 3 kills, 30 s outage); CI runs the
# short forms. Figures are printed and appended to tests/faults/results/.
faults: install
	MAILAPP_FAULTS_FULL=1 $(BIN)/pytest tests/faults -m faults -s -o timeout=1800 $(PYTEST_ARGS)

# Benchmarks (issue 5): installs Postfix's smtp-sink/smtp-source and wrk when missing (as root), runs
# every baseline and system benchmark BENCH_RUNS times and writes the medians to bench/results/.
BENCH_RUNS ?= 3
.PHONY: bench-smoke
bench: install
	$(BIN)/python -m bench.run --install --scale full --runs $(BENCH_RUNS) $(BENCH_ARGS)

bench-smoke: install
	$(BIN)/python -m bench.run --scale smoke --runs 1 $(BENCH_ARGS)

# The visual editor's browser code (GrapesJS and its MJML plugin, versions pinned in frontend/package.json
# and package-lock.json), built by npm and committed under mailapp/static/vendor/grapesjs/, so that
# `make run` needs no Node.js and the dashboard loads nothing from a CDN. Needs npm; run it after
# changing frontend/package.json.
EDITOR_ASSETS := mailapp/static/vendor/grapesjs
editor-assets:
	cd frontend && npm ci --ignore-scripts --no-audit --no-fund
	mkdir -p $(EDITOR_ASSETS)
	cp frontend/node_modules/grapesjs/dist/grapes.min.js $(EDITOR_ASSETS)/grapes.min.js
	cp frontend/node_modules/grapesjs/dist/css/grapes.min.css $(EDITOR_ASSETS)/grapes.min.css
	cp frontend/node_modules/grapesjs-mjml/dist/index.js $(EDITOR_ASSETS)/grapesjs-mjml.min.js
	cp frontend/node_modules/grapesjs/LICENSE $(EDITOR_ASSETS)/LICENSE-grapesjs
	cp frontend/node_modules/grapesjs-mjml/LICENSE $(EDITOR_ASSETS)/LICENSE-grapesjs-mjml
	mkdir -p $(EDITOR_ASSETS)/font-awesome/css $(EDITOR_ASSETS)/font-awesome/fonts
	cp frontend/node_modules/font-awesome/css/font-awesome.min.css $(EDITOR_ASSETS)/font-awesome/css/
	cp frontend/node_modules/font-awesome/fonts/fontawesome-webfont.woff2 \
		frontend/node_modules/font-awesome/fonts/fontawesome-webfont.woff $(EDITOR_ASSETS)/font-awesome/fonts/
	# The source maps are not shipped: drop the comments that point at them (not the line they end).
	sed -i -E 's@/[/*]# sourceMappingURL=[^ *]*( \*/)?@@' $(EDITOR_ASSETS)/*.js $(EDITOR_ASSETS)/*.css
	du -sh $(EDITOR_ASSETS)

# The ALTCHA proof-of-work widget of signup forms, pinned in frontend/package.json like the editor's
# assets and committed under mailapp/static/vendor/altcha/: the bundle with its workers inlined (they
# start from blob: URLs, which the hosted page's CSP allows), so a pasted snippet works from any site.
ALTCHA_ASSETS := mailapp/static/vendor/altcha
altcha-assets:
	cd frontend && npm ci --ignore-scripts --no-audit --no-fund
	mkdir -p $(ALTCHA_ASSETS)
	cp frontend/node_modules/altcha/dist/main/altcha.min.js $(ALTCHA_ASSETS)/altcha.min.js
	cp frontend/node_modules/altcha/LICENSE.txt $(ALTCHA_ASSETS)/LICENSE-altcha
	du -sh $(ALTCHA_ASSETS)

clean:
	rm -rf $(VENV) instance .pytest_cache

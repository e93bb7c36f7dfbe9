# Entry points. Each installs what a fresh Debian machine lacks before it builds.
.PHONY: run test

# Runs the user and order examples together on their embedded defaults.
run:
	bash scripts/run-example.sh

# Runs the whole test suite (fmt, clippy -D warnings, dependency check, tests, docs).
test:
	bash scripts/test.sh

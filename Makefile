# Thin wrappers: the logic lives in scripts/. PGA_HOME and PGA_DEMO_PORT are read
# from the environment (see scripts/setup.sh and scripts/cluster.sh).
# Extra arguments: make test ARGS='-k approve', make demo ARGS='...'.

ARGS ?=

.PHONY: setup demo demo-stop psql test lint bench clean-demo

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh $(ARGS)

demo-stop:
	bash scripts/cluster.sh stop

psql:
	bash scripts/cluster.sh psql $(ARGS)

test:
	bash scripts/test.sh $(ARGS)

lint:
	bash scripts/lint.sh

bench:
	bash scripts/bench.sh $(ARGS)

clean-demo:
	bash scripts/cluster.sh clean

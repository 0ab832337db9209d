.PHONY: setup test demo bench
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench: setup
	.venv/bin/python benchmarks/raster.py

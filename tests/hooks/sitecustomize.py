"""Python runs this at start-up in every process that has tests/hooks on its PYTHONPATH: the
subprocesses the slow tests start (Snakemake jobs, torchrun ranks, engine daemons, SLURM jobs).
It installs the test-only hooks the environment asks for (codeift_test_hooks); without them set
it does nothing. The package itself carries no test hook."""

import codeift_test_hooks

codeift_test_hooks.install()

"""Tests of codeift.tasks (a package: its modules import as tests.tasks.test_x)."""

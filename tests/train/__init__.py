"""Tests of codeift.train (a package: its modules import as tests.train.test_x)."""

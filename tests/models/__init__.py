"""Tests of codeift.models (a package: its modules import as tests.models.test_x)."""

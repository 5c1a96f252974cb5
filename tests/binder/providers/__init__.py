"""Tests of binder.providers, one file per module and per kind (test_github.py, ...).

A package so its test modules import as `providers.test_github` and never collide with a
same-named test module elsewhere (pytest's default import mode keys modules by basename).
"""

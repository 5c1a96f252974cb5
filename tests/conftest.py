"""Shared test settings. Kept free of CDK imports: tests/services also run on the image's Python."""

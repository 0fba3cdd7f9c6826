"""Byte stores: one small interface, a local-disk and an S3 implementation."""

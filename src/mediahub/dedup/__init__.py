"""Duplicate detection: the policy, the perceptual index, and the backfill of fingerprints."""

"""Composer pretraining from a mix: a resolved config becomes a Composer Trainer in short functions."""

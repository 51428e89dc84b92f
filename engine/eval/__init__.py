"""Evaluation of world models against a real world: image metrics and motion estimators."""

"""Widgets the screens are built from: plot, trial table, phase list, settings fields."""

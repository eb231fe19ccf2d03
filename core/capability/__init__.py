"""Capability checks that ship with the project: what an edit costs the model's ordinary skills, measured offline."""

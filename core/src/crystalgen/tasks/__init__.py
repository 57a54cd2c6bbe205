"""Registered tasks over the crystals of a dataset split: the contract (base.py) and the core's own."""

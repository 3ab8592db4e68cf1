"""Synthetic multiparametric MRI phantoms with known ground truth (a test bench, not data)."""

from reportgen.synth.generate import DOMAINS, SynthOptions, synth_dataset, synth_one

__all__ = ["DOMAINS", "SynthOptions", "synth_dataset", "synth_one"]

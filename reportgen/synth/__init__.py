"""Synthetic multiparametric MRI phantoms with known ground truth (a test bench, not data)."""

from reportgen.synth.generate import DOMAINS, SynthOptions, read_manifest, synth_dataset, synth_one

__all__ = ["DOMAINS", "SynthOptions", "read_manifest", "synth_dataset", "synth_one"]

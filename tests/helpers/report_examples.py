"""Template values the tests share: a breast study's fields and a spiculated mass with
washout (BI-RADS 5 by the rules)."""

BREAST = {
    "fgt_amount": "fgt_scattered",
    "bpe_level": "bpe_mild",
    "bpe_symmetry": "bpe_symmetric",
    "axillary_adenopathy": False,
    "skin_thickening": False,
}
SPICULATED = {
    "type": "mass",
    "laterality": "left",
    "clock": "clock_2",
    "depth": "depth_middle",
    "size_mm": 17,
    "shape": "shape_irregular",
    "margin": "margin_spiculated",
    "internal_enhancement": "enhancement_heterogeneous",
    "kinetics_initial": "initial_fast",
    "kinetics_delayed": "delayed_washout",
    "t2_signal": "t2_isointense",
    "diffusion": "diffusion_restricted",
}

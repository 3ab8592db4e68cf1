"""Learning from clinicians: rewards, the reward model and PPO refinement.

Floor 3: it reads typed corrections (`reportgen.report.correction.CorrectionRecord`) and
the report model from the core below it; it never imports the review app or its store,
which hand the corrections over through the CLI.
"""

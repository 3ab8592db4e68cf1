"""Learning from clinicians: the reward log, rewards, the reward model and PPO refinement."""

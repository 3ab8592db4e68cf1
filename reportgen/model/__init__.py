"""The report model: MAE encoder + cross-attention decoder, written under the template's grammar."""

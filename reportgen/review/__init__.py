"""The clinician review app: worklist, image viewer, report form, signing (`reportgen review`)."""

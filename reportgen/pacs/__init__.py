"""PACS bridge: DICOM networking, pulling studies in, pushing drafts out, watching."""

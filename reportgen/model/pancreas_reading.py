"""Pancreas CT template values from measurements: what `measure_pancreas_study` found,
in the template's words, by thresholds a radiologist uses.

- Vessel contact: the SAR/APA categories from the measured arc (less than
  `CONTACT_MIN_DEG`, 180 or less, more than 180); a vein whose channel (the superior
  mesenteric and portal veins together) is cut where the tumour fills the gap
  (`reportgen.measure.pancreas.occluded_vein`), occluded; a vein of 180 degrees or less
  whose convex cross-section where the tumour touches it is `INTRUDED_SHARE` or more
  tumour-dark in the portal venous phase, irregular (tear-drop;
  `reportgen.measure.vessels.lumen_intrusion`).
- Attenuation in the pancreatic phase: more than `ATTENUATION_HU` below the pancreas,
  hypoattenuating; more than that above, hyperattenuating; else isoattenuating.
- Main pancreatic duct dilated above 3 mm, common bile duct above 8 mm (the usual
  thresholds; the SAR/APA template asks dilated or not); a duct cut-off where a tumour
  meets a dilated duct.
- A lesion of fluid attenuation (median at most `FLUID_HU` in every phase) is cystic,
  whatever its outline's class: a ductal adenocarcinoma is soft tissue (about 40 HU
  without contrast, more with it), a cyst is fluid (0-20 HU).
- Liver metastases, peritoneal nodules: any outlined deposit, or one read in the portal
  venous pixels (`hypoattenuating_liver_foci`, `soft_tissue_nodules`); ascites: more than
  `ASCITES_ML`; a suspicious node beside the aorta below the pancreas's lowest point is
  non-regional (para-aortic, aortocaval), else regional.
Nothing is stated that needs contrast when the study has no enhanced phase: the
template's `requires` decides, and the draft leaves those fields out.
"""

from __future__ import annotations

from reportgen.measure.pancreas import PancreasMeasures, PancreaticLesion

CONTACT_MIN_DEG = 10.0
ATTENUATION_HU = 20.0
DUCT_DILATED_MM = 3.0
CBD_DILATED_MM = 8.0
ASCITES_ML = 10.0
FLUID_HU = 20.0
INTRUDED_SHARE = 0.08  # development phantoms (seeds 41000-41001): round veins mostly below
NONREGIONAL_FROM_AORTA_MM = 30.0  # a node this close to the aorta's axis, below the pancreas
CONTACT_FIELDS = {
    "superior_mesenteric_artery": "sma_contact",
    "celiac_axis": "celiac_contact",
    "common_hepatic_artery": "cha_contact",
    "superior_mesenteric_vein": "smv_contact",
    "portal_vein": "pv_contact",
}
VEINS = ("superior_mesenteric_vein", "portal_vein")


def contact_value(field_id: str, vessel: str, lesion: PancreaticLesion) -> str:
    prefix = field_id.removesuffix("_contact")
    contact = lesion.contacts.get(vessel)
    if contact is None:
        return f"{prefix}_contact_none"
    if vessel in VEINS and contact.occluded:
        return f"{prefix}_contact_occlusion"
    if contact.degrees < CONTACT_MIN_DEG:
        return f"{prefix}_contact_none"
    return f"{prefix}_contact_le180" if contact.degrees <= 180.0 else f"{prefix}_contact_gt180"


def read_pancreas(
    measures: PancreasMeasures, contrast_phase: str = "CT_PANC"
) -> tuple[dict, list[dict]]:
    """(report-level values, one dict per lesion) for `pancreas_ct`."""
    findings = []
    for lesion in measures.lesions:
        fluid = bool(lesion.attenuation_hu) and max(lesion.attenuation_hu.values()) <= FLUID_HU
        solid = lesion.kind == "tumour" and not fluid
        finding: dict = {
            "type": "pancreatic_solid_mass" if solid else "pancreatic_cystic_lesion",
            "location": lesion.part,
            "size_mm": max(3, round(lesion.size_mm)),
        }
        if solid:
            delta = lesion.attenuation_delta_hu.get(contrast_phase, 0.0)
            finding["attenuation"] = (
                "hypoattenuating"
                if delta < -ATTENUATION_HU
                else "hyperattenuating"
                if delta > ATTENUATION_HU
                else "isoattenuating"
            )
            finding["duct_cutoff"] = bool(
                measures.duct_diameter_mm > DUCT_DILATED_MM and lesion.duct_distance_mm <= 3.0
            )
            for vessel, field_id in CONTACT_FIELDS.items():
                finding[field_id] = contact_value(field_id, vessel, lesion)
            touched = [v for v in VEINS if finding[CONTACT_FIELDS[v]].endswith("_le180")]
            if touched:
                finding["vein_irregularity"] = any(
                    lesion.contacts[v].intrusion >= INTRUDED_SHARE for v in touched
                )
        findings.append(finding)
    nonregional = [
        node
        for node in measures.nodes
        if measures.aorta_x_mm is not None
        and measures.pancreas_lowest_z_mm is not None
        and abs(node[0] - measures.aorta_x_mm) <= NONREGIONAL_FROM_AORTA_MM
        and node[2] < measures.pancreas_lowest_z_mm
    ]
    fields = {
        "duct_dilatation": measures.duct_diameter_mm > DUCT_DILATED_MM,
        "biliary_dilatation": measures.cbd_diameter_mm > CBD_DILATED_MM,
        "liver_metastases": measures.liver_deposits > 0,
        "peritoneal_nodules": measures.peritoneal_nodules > 0,
        "ascites": measures.ascites_ml > ASCITES_ML,
        "regional_nodes": len(measures.nodes) > len(nonregional),
        "nonregional_nodes": bool(nonregional),
    }
    return fields, findings

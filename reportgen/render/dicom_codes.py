"""What the DICOM SR and SEG writers share: the ontology's codes as DICOM coded concepts,
the private coding schemes they use, and the patient/study attributes a derived object
must carry even when the source images lack them."""

from __future__ import annotations

import hashlib

from highdicom.sr import CodedConcept
from pydicom import Dataset

from ontology.concepts import SYSTEM_URIS, Concept

# DICOM coding scheme designators (PS3.16 Table 8-1); "99..." are private schemes and are
# declared in each object's Coding Scheme Identification Sequence.
SCHEME = {"snomed": "SCT", "radlex": "RADLEX", "radlex_cde": "99RADELEMENT", "local": "99REPORTGEN"}
PRIVATE_SCHEMES = {
    "99RADELEMENT": ("RadElement common data elements (ACR/RSNA)", "ACR/RSNA"),
    "99REPORTGEN": ("reportgen local concepts", "reportgen"),
}
# Patient and study attributes a derived object must carry, empty when unknown (Type 2);
# some exports and anonymisers drop them from the images.
TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
NOT_FOR_CLINICAL_USE_LABEL = "NOT FOR CLINICAL USE"


def code_value(code: str) -> str:
    """A code value in the 16 characters of DICOM's Code Value: longer ones (local concept
    ids, RadElement answers) keep a readable head and a stable hash of the whole. Long Code
    Value exists, but many readers (highdicom's own parser among them) expect Code Value."""
    if len(code) <= 16:
        return code
    return f"{code[:7]}~{hashlib.sha1(code.encode()).hexdigest()[:8]}"


def concept_code(concept: Concept) -> CodedConcept:
    """A concept's primary code; its meaning is the preferred English term."""
    primary = concept.primary
    return CodedConcept(code_value(primary.code), SCHEME[primary.system_key], concept.en[:64])


def coding_code(coding) -> CodedConcept | None:
    """A report value's own coding (system URI, code, display) as a DICOM coded concept."""
    key = next((k for k, uri in SYSTEM_URIS.items() if uri == coding.system), None)
    return CodedConcept(code_value(coding.code), SCHEME[key], coding.display[:64]) if key else None


def with_type2(ds: Dataset) -> Dataset:
    """A copy of `ds` with every Type 2 patient/study attribute present (empty if unknown)."""
    copy = Dataset(ds)
    for keyword in TYPE2:
        if keyword not in copy:
            setattr(copy, keyword, "")
    return copy


def declare_private_schemes(ds: Dataset) -> None:
    """Name the private coding schemes in the object's header, as PS3.3 C.12.1 asks."""
    items = []
    for designator, (name, organisation) in PRIVATE_SCHEMES.items():
        item = Dataset()
        item.CodingSchemeDesignator = designator
        item.CodingSchemeName = name
        item.CodingSchemeResponsibleOrganization = organisation
        items.append(item)
    ds.CodingSchemeIdentificationSequence = items

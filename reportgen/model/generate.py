"""Study in, structured report out: encode, decode under the template, build, explain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pretrain_mae.data import collate
from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.errors import InputError
from reportgen.io.study import Study
from reportgen.model.crop_reader import CROP_READER_FOLDER, load_crop_reader
from reportgen.model.decoding import Drafted, draft_tokens
from reportgen.model.generator import Draft, GenerateOptions, LoadedModel
from reportgen.model.grammar import GrammarError, ParseState, TemplateGrammar
from reportgen.model.modeling import load_model
from reportgen.model.native_candidates import lesion_chooser
from reportgen.model.study_findings import StudyFindings, measure_study_findings
from reportgen.report import Report, build_report
from reportgen.report.schema import Box, Evidence, Problem, Provenance, StudyRef
from reportgen.report.technique import study_technique

BUNDLED_MODELS = Path(__file__).resolve().parent.parent / "demo_model"  # one folder per template
BUNDLED_MODEL = BUNDLED_MODELS / "birads_mri"


class ReportGenerator(LoadedModel):
    """A loaded report model, ready to draft reports for studies."""

    def __init__(self, model_dir: Path | None = None, device: str = "cpu"):
        folder = Path(model_dir) if model_dir else BUNDLED_MODEL
        model, self.vocab = load_model(folder, device)
        super().__init__(folder, model, model.cfg.template, device)
        self.grammar = TemplateGrammar(self.template, self.vocab)
        # Reads each outlined candidate's descriptors at the acquisition's own resolution
        # (`reportgen.model.crop_reader`), where the model folder holds one.
        reader = folder / CROP_READER_FOLDER
        self.crop_reader = load_crop_reader(reader, device) if reader.is_dir() else None

    @property
    def sequences(self) -> tuple[str, ...]:
        return self.model.encoder_cfg.sequences

    def tensors(self, study: Study) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        image, present, arrays = self.prepared(study, self.model.input_cfg)
        if not arrays["present"].any():
            raise InputError(
                study.source,
                f"has none of the sequences the model reads ({', '.join(self.sequences)})",
            )
        return image, present, arrays["affine"]

    def draft(self, study: Study, options: GenerateOptions | None = None) -> Draft:
        options = options or GenerateOptions()
        image, present, affine = self.tensors(study)
        draft = self.draft_tensors(
            study.study_id, image, present, affine, options, study.missing, study=study
        )
        if draft.report is not None:
            draft.report.study.technique = study_technique(study)
        if study.metadata.get("dce_phases"):  # which phases of a long dynamic were read
            draft.report.validation.problems.append(
                Problem(
                    severity="warning",
                    where="study.sequences",
                    rule="dce_phases",
                    message=str(study.metadata["dce_phases"]),
                )
            )
        return draft

    def draft_tensors(
        self,
        study_id: str,
        image: torch.Tensor,
        present: torch.Tensor,
        affine: np.ndarray | None,
        options: GenerateOptions,
        missing: list[str] | None = None,
        study: Study | None = None,
    ) -> Draft:
        """Draft from the prepared study; `study` (as loaded, each series on its own grid)
        lets a crop reader read the candidates at the acquisition's own resolution."""
        used = [s for s, p in zip(self.sequences, present[0].tolist(), strict=True) if p]
        grammar = self.grammar.for_sequences(used)  # what the study cannot show is skipped
        reader = self.crop_reader
        native = (
            reader is not None and study is not None and affine is not None and reader.reads(study)
        )
        choose = None
        measured = StudyFindings()
        if native:  # report-level findings the acquisition's own grid shows
            measured = measure_study_findings(study, {f.id for f in self.template.fields})
            grammar = grammar.study_measured_as(measured.values)
        if native and reader.gate is not None and self.model.has_evidence:
            choose = lesion_chooser(self.model, reader, study, affine)
        with torch.no_grad():
            memory, regions = self.model.encode_with_regions(image, present, choose)
        if regions is not None and self.model.has_evidence:  # only findings it can place
            placed = [c for c in regions.candidates[0] if c.outline is not None]
            if native:
                read_candidates(
                    reader,
                    study,
                    placed,
                    affine,
                    self.template,
                    used,
                    self.model.size_value,
                    occlude=options.explain,
                )
            grammar = grammar.at_most(len(placed)).measured_by(
                [c.reading.pointers for c in placed if c.reading is not None]
            )
            if choose is not None:  # the gate decided which are lesions: one finding each
                grammar = grammar.at_least(len(placed))
        drafted = draft_tokens(
            self.model,
            self.vocab,
            grammar if options.constrained else None,
            memory,
            num_beams=options.num_beams,
            do_sample=options.do_sample,
            temperature=options.temperature,
        )[0]
        try:
            state = grammar.parse(drafted.ids)
            if not state.done:
                raise GrammarError("generation stopped before the report was complete")
        except GrammarError as exc:
            if options.constrained:  # the automaton makes this impossible; never hide it
                raise RuntimeError(f"constrained draft broke the template: {exc}") from exc
            return Draft(None, None, drafted, None, error=str(exc))
        report = self._build(study_id, state, drafted, used, missing)
        if measured.measurements:
            report.study.measurements = dict(measured.measurements)
        probs = self._finding_malignancy(state, drafted)
        candidates = regions.candidates[0] if regions is not None else []
        chosen = finding_candidates(report, candidates)
        for i, cand in enumerate(chosen):  # read at the acquisition's own resolution
            reading = cand.reading if cand is not None else None
            if reading is not None and reading.malignancy is not None:
                probs[i] = reading.malignancy
        for finding, p in zip(report.findings, probs, strict=True):
            if p is not None:
                finding.evidence = finding.evidence or Evidence()
                finding.evidence.malignancy_probability = round(p, 4)
        outlines: list[np.ndarray | None] = [None] * len(report.findings)
        if regions is not None and affine is not None:
            outlines = outlined_boxes(report, candidates, affine, image.shape[2:], chosen)
            read_confidences(report, candidates, chosen)
        self.calibrated(report)
        study_p = max([p for p in probs if p is not None], default=None)
        if study_p is None:  # no finding (or no per-finding category): the study's headline
            headline = self.template.headline
            study_p = self._suspicious(f"derived.{headline}", headline, state, drafted)
        if options.explain and affine is not None and report.findings:
            from reportgen.model.explain import explain_findings

            explain_findings(
                self, report, state, drafted, image, present, affine, options.explain_dir
            )
            for finding, cand in zip(report.findings, chosen, strict=True):
                # a finding whose values a crop reader read rests on what that reader saw;
                # the decoder only copied them (its own contributions are nil)
                if cand is not None and cand.reading is not None and cand.reading.contributions:
                    finding.evidence.sequence_contributions = dict(cand.reading.contributions)
        return Draft(report, state, drafted, study_p, outlines=outlines, grid_affine=affine)

    def report_of(
        self, study_id: str, drafted: Drafted, used: list[str] | None = None
    ) -> Report | None:
        """The report a (sampled) token sequence spells, or None if it is incomplete."""
        try:
            state = self.grammar.for_sequences(list(used or self.sequences)).parse(drafted.ids)
        except GrammarError:
            return None
        if not state.done:
            return None
        report = self._build(study_id, state, drafted, list(used or self.sequences), None)
        return self.calibrated(report)

    @torch.no_grad()
    def image_embeddings(self, images) -> torch.Tensor:
        """Contrastive image embeddings of cached studies (retrieval, `similar`)."""
        out = []
        for start in range(0, len(images), 16):
            batch = collate([images[i] for i in range(start, min(len(images), start + 16))])
            out.append(
                self.model.image_embedding(self.model.encode(batch["image"], batch["present"]))
            )
        return torch.cat(out)

    # -- pieces ----------------------------------------------------------------------------
    def _prob(self, drafted: Drafted, position: int) -> float | None:
        """The drafted token's probability, stated to 4 decimals as every confidence is
        (its 7th decimal varies with the CPU's float kernels)."""
        if position >= len(drafted.probs):
            return None
        return round(float(drafted.probs[position][drafted.ids[position]]), 4)

    def _suspicious(
        self, key: str, derived_id: str, state: ParseState, drafted: Drafted
    ) -> float | None:
        """The model's probability that the value at `key` is one the template calls
        suspicious (the malignancy probability the evaluation scores as AUROC)."""
        position = state.value_positions.get(key)
        suspicious = self.template.derived(derived_id).suspicious
        if position is None or not suspicious or position >= len(drafted.probs):
            return None
        dist = drafted.probs[position]
        ids = [
            self.vocab.id(f"<v:{v}>") for v in sorted(suspicious) if f"<v:{v}>" in self.vocab.tokens
        ]
        return float(dist[ids].sum())

    def _finding_malignancy(self, state: ParseState, drafted: Drafted) -> list[float | None]:
        spec = self.template.suspicious_finding_result
        return [
            self._suspicious(f"findings[{i}].{spec.id}", spec.id, state, drafted)
            if spec is not None
            else None
            for i in range(len(state.findings))
        ]

    def _build(
        self, study_id: str, state: ParseState, drafted: Drafted, used: list[str], missing
    ) -> Report:
        conf = {
            key.split(".", 1)[1]: p
            for key, pos in state.value_positions.items()
            if key.startswith("fields.") and (p := self._prob(drafted, pos)) is not None
        }
        finding_conf = [
            {
                key.split(".", 1)[1]: p
                for key, pos in state.value_positions.items()
                if key.startswith(f"findings[{i}].") and (p := self._prob(drafted, pos)) is not None
            }
            for i in range(len(state.findings))
        ]
        cfg = self.model.cfg
        report = build_report(
            self.template,
            state.fields,
            state.findings,
            study=StudyRef(
                study_id=study_id,
                sequences_used=used,
                sequences_missing=[s for s in self.sequences if s not in used]
                if missing is None
                else list(missing),
            ),
            provenance=Provenance(
                source="model",
                model_name=cfg.name,
                model_version=cfg.version,
                checkpoint_sha256=self.checkpoint,
            ),
            stated=state.stated,
            confidences=conf,
            finding_confidences=finding_conf,
            comment=self.vocab.decode_text(state.comment),
            notice=NOT_FOR_CLINICAL_USE,
        )
        for i, (finding, stated) in enumerate(
            zip(report.findings, state.finding_stated, strict=True)
        ):
            for key, value in stated.items():
                rule = finding.derived.get(key)
                if rule is not None and rule.value != value:
                    report.validation.problems.append(
                        Problem(
                            severity="warning",
                            where=f"findings[{i}].derived.{key}",
                            rule="prediction",
                            message=f"predicted {value!r} but the template's rules give {rule.value!r}",
                        )
                    )
        return report


def outlined_boxes(
    report: Report,
    candidates: list,
    affine: np.ndarray,
    shape: tuple[int, ...] | None = None,
    chosen: list | None = None,
) -> list[np.ndarray | None]:
    """Where each finding is: the outline of its candidate (`chosen`, else
    `finding_candidates`). Sets each finding's box (its outline at the acquisition's own
    resolution where it was read there) and, in the breast, its distance from the nipple,
    and returns its outline as a mask of `shape` (the input grid)."""
    from reportgen.model.explain import region_box_mm

    masks: list[np.ndarray | None] = [None] * len(report.findings)
    if chosen is None:
        chosen = finding_candidates(report, candidates)
    for i, cand in enumerate(chosen):
        if cand is None:
            continue
        finding = report.findings[i]
        size = shape or tuple(int(v) for v in cand.outline.max(0) + 1)
        region = np.zeros(tuple(int(v) for v in size), dtype=bool)
        region[tuple(cand.outline.T)] = True
        low, high = region_box_mm(region, affine)
        if cand.reading is not None and cand.reading.native_box_mm is not None:
            low, high = cand.reading.native_box_mm  # outlined at the acquisition's resolution
        finding.evidence = finding.evidence or Evidence()
        if cand.reading is not None and cand.reading.nipple_distance_mm is not None:
            finding.evidence.nipple_distance_mm = round(cand.reading.nipple_distance_mm, 1)
        finding.evidence.box = Box(
            min_mm=tuple(low.round(2).tolist()), max_mm=tuple(high.round(2).tolist())
        )
        masks[i] = region
    return masks


def finding_candidates(report: Report, candidates: list) -> list:
    """Each finding's outlined candidate (None where there is none): the one whose
    measured and read values the finding states, as the decoder copies them; ties go to
    the candidate in the finding's own place in the order the decoder was trained in."""
    from scipy.optimize import linear_sum_assignment

    outlined = [c for c in candidates if c.outline is not None]
    chosen: list = [None] * len(report.findings)
    if not report.findings or not outlined:
        return chosen
    cost = np.array(
        [
            [
                -_agreement(finding, cand) + 1e-3 * abs(i - j)
                for j, cand in enumerate(candidates)
                if cand.outline is not None
            ]
            for i, finding in enumerate(report.findings)
        ]
    )
    for i, j in zip(*linear_sum_assignment(cost), strict=True):
        chosen[i] = outlined[j]
    return chosen


def read_candidates(
    reader,
    study: Study,
    placed: list,
    affine: np.ndarray,
    template,
    used: list[str],
    size_value=None,
    occlude: bool = False,
) -> None:
    """Read each placed candidate's crop with the crop reader (at the acquisition's own
    resolution, around its outline's centre in world mm) and add what it reads to the
    values the candidate constrains (`TemplateGrammar.measured_by`): a finding's
    descriptors are then the ones read of the lesion it describes, each value the most
    probable one the study can show, only for fields applicable to the type read and
    assessable with the study's series. Their probabilities go to `reading.read`. With a
    size head, the size is the one read at this resolution (`size_value` spells it as
    the template's size values). With `occlude`, each acquired sequence family is hidden
    from the reader in turn and the drop in the read values' probability is what the
    reading rests on (`CandidateReading.contributions`)."""
    from reportgen.model.crop_reader import SIZE_BORDER_LIMIT
    from reportgen.model.native_candidates import crop_outline_mm
    from reportgen.preprocessing import GridSpec, lesion_crop
    from reportgen.report.assessable import not_assessable, unseen_values
    from reportgen.report.rules import Scope, evaluate

    readable = [c for c in placed if c.reading is not None]
    if not readable:
        return
    grid = GridSpec(reader.cfg.crop_shape, reader.cfg.crop_spacing)
    places = [_read_places(c.reading, affine) for c in readable]
    owner = np.repeat(np.arange(len(readable)), [len(p) for p in places])
    crops, present = zip(
        *(lesion_crop(study, place, grid) for where in places for place in where), strict=True
    )
    measures = reader.measure(np.stack(crops), np.stack(present))
    border = measures[:, reader.cfg.measures.index("outline_reached_border")].numpy()
    first = np.searchsorted(owner, np.arange(len(readable)))  # where each was found
    for candidate, where, k in zip(readable, places, first, strict=True):
        if border[k] < SIZE_BORDER_LIMIT:  # the whole lesion is inside its crop: its box is there
            points = crop_outline_mm(crops[k], present[k], where[0], grid, body=True)
            if len(points):  # voxel centres: the box reaches half a voxel beyond them
                half = 0.5 * np.asarray(grid.spacing)
                candidate.reading.native_box_mm = (points.min(0) - half, points.max(0) + half)
    read = _mean_reads(reader.read_measures(measures), owner)
    hidden_reads = (
        {
            family: _mean_reads(reads, owner)
            for family, reads in _hidden_family_reads(
                reader, np.stack(crops), np.stack(present)
            ).items()
        }
        if occlude
        else {}
    )
    sizes = reader.size_mm(measures.numpy()) if size_value is not None else None
    if sizes is not None:
        sizes = _mean_finite(sizes, owner)
    malignancy = reader.malignancy_probability(measures.numpy())
    if malignancy is not None:
        malignancy = _mean_finite(malignancy, owner)
    hidden, unseen = not_assessable(template, used), unseen_values(template, used)
    for k, (candidate, probs) in enumerate(zip(readable, read, strict=True)):
        if malignancy is not None:
            candidate.reading.malignancy = float(malignancy[k])
        if sizes is not None and np.isfinite(sizes[k]) and "size_mm" in candidate.reading.pointers:
            candidate.reading.pointers["size_mm"] = size_value(float(sizes[k]))
        values: dict[str, str] = {}
        for field_id, p in probs.items():  # in template order: type decides the others
            spec = template.field(field_id)
            if field_id in hidden or (
                spec.applicable_if is not None and not evaluate(spec.applicable_if, Scope(values))
            ):
                continue
            options = reader.cfg.fields[field_id]
            allowed = [k for k, v in enumerate(options) if v not in unseen.get(field_id, ())]
            best = max(allowed, key=lambda k: float(p[k]))
            values[field_id] = options[best]
            candidate.reading.read[field_id] = reader.confidence(field_id, float(p[best]))
        candidate.reading.pointers.update(values)
        for family, hidden in hidden_reads.items():
            drops = [
                float(
                    probs[f][reader.cfg.fields[f].index(v)]
                    - hidden[k][f][reader.cfg.fields[f].index(v)]
                )
                for f, v in values.items()
            ]
            candidate.reading.contributions[family] = (
                round(float(np.mean(drops)), 4) if drops else 0.0
            )


# What a crop reader's reading is occluded by: each sequence family as a reader uses it
# (the diffusion pair and the dynamic phases each only mean something together).
FAMILIES = {"T2W": ("T2W",), "DWI/ADC": ("DWI", "ADC"), "DCE": tuple(f"DCE_{k}" for k in range(4))}


def _hidden_family_reads(reader, crops: np.ndarray, present: np.ndarray) -> dict[str, list[dict]]:
    """The reader's reading of each crop with one acquired sequence family hidden (its
    channels zero, its flags off, as if it had not been acquired)."""
    from reportgen.io.sequences import PROTOCOL

    out = {}
    for family, names in FAMILIES.items():
        channels = [PROTOCOL.index(n) for n in names if n in PROTOCOL]
        if not present[:, channels].any():
            continue
        hidden_crops, hidden_present = crops.copy(), present.copy()
        hidden_crops[:, channels] = 0.0
        hidden_present[:, channels] = False
        out[family] = reader.read_measures(reader.measure(hidden_crops, hidden_present))
    return out


def _read_places(reading, affine: np.ndarray) -> list[np.ndarray]:
    """Where a crop reader reads a candidate (world mm): where it was found at the
    acquisition's own resolution (its crop outline's centre), and the centre of the
    model's outline where that lies further than SAME_PLACE_MM away. Each place is biased
    its own way (the crop outline towards enhancing tissue beside the lesion, the 2 mm
    outline by its grid), and the reading averaged over both was right more often than
    either alone (docs/report_model.md, "Where a lesion is read")."""
    centre = affine[:3, :3] @ reading.centre_voxel + affine[:3, 3]
    if reading.found_at_mm is None:
        return [centre]
    found = np.asarray(reading.found_at_mm, float)
    return [found, centre] if np.linalg.norm(found - centre) > SAME_PLACE_MM else [found]


SAME_PLACE_MM = 1.0  # two read places closer than this are one (a 2 mm voxel's rounding)


def _mean_reads(reads: list[dict], owner: np.ndarray) -> list[dict]:
    """Each candidate's distributions averaged over the places it was read at."""
    return [
        {
            f: torch.stack([reads[i][f] for i in np.flatnonzero(owner == k)]).mean(0)
            for f in reads[int(np.flatnonzero(owner == k)[0])]
        }
        for k in range(int(owner.max()) + 1)
    ]


def _mean_finite(values: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Each candidate's mean over its places of the finite values (NaN if none is)."""
    out = np.full(int(owner.max()) + 1, np.nan)
    for k in range(len(out)):
        mine = values[owner == k]
        if np.isfinite(mine).any():
            out[k] = float(np.nanmean(mine))
    return out


def read_confidences(report: Report, candidates: list, chosen: list | None = None) -> None:
    """A finding's read descriptors carry the crop reader's probability as confidence
    (the decoder only copied them); `chosen`: each finding's candidate, if known."""
    if chosen is None:
        chosen = finding_candidates(report, candidates)
    for finding, cand in zip(report.findings, chosen, strict=True):
        if cand is None or cand.reading is None:
            continue
        for field_id, p in cand.reading.read.items():
            value = finding.fields.get(field_id)
            if value is not None and str(value.value) == cand.reading.pointers.get(field_id):
                value.confidence = round(p, 4)


def _agreement(finding, candidate) -> int:
    """How many of the candidate's measured values the finding states."""
    pointers = candidate.reading.pointers if candidate.reading is not None else {}
    same = 0
    for field_id, measured in pointers.items():
        stated = finding.fields.get(field_id)
        if stated is None:
            continue
        stated = stated.value
        if isinstance(stated, int | float) and not isinstance(stated, bool):
            same += abs(float(stated) - float(measured)) < 1e-6
        else:
            same += str(stated) == measured
    return same

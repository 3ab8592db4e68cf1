"""Free-text reports as radiologists write them, in English and Chinese.

Written from a ground-truth report with varied sentence frames, synonyms drawn from
the ontology, shuffled order, several ways to negate, normal findings sometimes left
unsaid (as in practice, where unmentioned means absent), size in mm or cm with one or
two dimensions, and distractor sentences (history, technique, comparison). The parser
is measured on these texts from seeds it was never developed on.
"""

from __future__ import annotations

import numpy as np

from ontology.concepts import ConceptTable, default_concepts
from reportgen.report.schema import Report
from reportgen.report.template import Template

NOUN_ENDINGS = {
    "enhancement",
    "signal",
    "curve",
    "margins",
    "margin",
    "shape",
    "kinetics",
    "distribution",
    "pattern",
    "phase",
    "septations",
    "borders",
    "wash-in",
    "rise",
}
VERBS = {  # a synonym starting with one of these is a clause, not a noun phrase
    "invades",
    "invading",
    "restricts",
    "does",
    "extends",
    "extending",
    "involves",
    "involving",
    "infiltrates",
    "infiltrating",
    "breaches",
    "breaching",
    "measures",
    "measuring",
    "is",
    "has",
    "the",
}
EN_NEG = [
    "No {x}.",
    "There is no {x}.",
    "No evidence of {x}.",
    "Negative for {x}.",
    "{X} is not seen.",
    "No {x} is identified.",
]
ZH_NEG = ["未见{x}。", "无{x}。", "未见明显{x}。", "未发现{x}。", "{x}：无。"]
EN_POS = [
    "{X} is present.",
    "There is {x}.",
    "{X} is noted.",
    "{X} is seen.",
    "Findings include {x}.",
]
ZH_POS = ["可见{x}。", "见{x}。", "{x}。", "伴{x}。", "提示{x}。"]


class Writer:
    def __init__(self, lang: str, rng: np.random.Generator, concepts: ConceptTable | None = None):
        self.lang = lang
        self.rng = rng
        self.concepts = concepts or default_concepts()

    # -- helpers -------------------------------------------------------------------------
    def pick(self, options: list[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def term(self, cid: str, p_pref: float = 0.5) -> str:
        """The preferred term or a synonym that reads as a noun phrase (verb phrases such as
        "invades the chest wall" are for the parser, not for writing)."""
        concept = self.concepts[cid]
        syns = [
            s
            for s in (concept.syn_zh if self.lang == "zh" else concept.syn_en)
            if s.split()[0] not in VERBS
        ]
        if not syns or self.rng.random() < p_pref:
            return concept.pref(self.lang)
        return self.pick(syns)

    def side(self, cid: str) -> str:
        return (
            self.term(cid, p_pref=0.8) if self.lang == "en" else {"right": "右", "left": "左"}[cid]
        )

    def cap(self, text: str) -> str:
        return text[:1].upper() + text[1:] if self.lang == "en" else text

    def mention(self, cid: str, present: bool) -> str:
        x = self.term(cid)
        frames = (
            (EN_POS if present else EN_NEG)
            if self.lang == "en"
            else (ZH_POS if present else ZH_NEG)
        )
        frame = self.pick(frames)
        return frame.replace("{X}", self.cap(x)).replace("{x}", x)

    def size(self, mm: float, second_ratio: float | None = None) -> str:
        mm = float(round(mm))
        style = int(self.rng.integers(4))
        if second_ratio is None:
            second_ratio = float(self.rng.uniform(0.55, 0.9))
        other = max(1.0, round(mm * second_ratio))
        x = "x" if self.lang == "en" else self.pick(["×", "x", "*"])
        if style == 0:
            return f"{mm:g} mm" if self.lang == "en" else f"{mm:g}mm"
        if style == 1:
            return f"{mm / 10:.1f} cm" if self.lang == "en" else f"{mm / 10:.1f}cm"
        if style == 2:
            return (
                f"{mm / 10:.1f} {x} {other / 10:.1f} cm"
                if self.lang == "en"
                else f"{mm / 10:.1f}cm{x}{other / 10:.1f}cm"
            )
        return f"{mm:g} {x} {other:g} mm" if self.lang == "en" else f"{mm:g}{x}{other:g}mm"

    def clock(self, cid: str) -> str:
        hour = int(cid.split("_")[1])
        if self.lang == "en":
            return self.pick(
                [f"{hour} o'clock", f"the {hour} o'clock position", f"{hour}:00", f"{hour} o’clock"]
            )
        return self.pick([f"{hour}点钟方向", f"{hour}点位置", f"{hour}点钟", f"约{hour}点方向"])

    def join(self, sentences: list[str]) -> str:
        return (" " if self.lang == "en" else "").join(s for s in sentences if s)


def _breast_finding(w: Writer, f: dict) -> list[str]:
    en = w.lang == "en"
    side = w.side(f["laterality"])
    clock = w.clock(f["clock"])
    depth = w.term(f["depth"])
    size = w.size(f["size_mm"], second_ratio=1.0 if f["type"] == "focus" else None)
    kind = w.term(f["type"], p_pref=0.6)
    if en:
        where = w.pick(
            [
                f"In the {side} breast at {clock}, {depth}",
                f"{w.cap(side)} breast, {clock}, {depth}:",
                f"At {clock} of the {side} breast ({depth})",
            ]
        )
        article = "an" if kind[0] in "aeiou" else "a"
        head = f"{where} there is {article} {kind} measuring {size}."
    else:
        where = w.pick(
            [
                f"{side}乳{clock}{depth}",
                f"{side}乳腺{clock}（{depth}）",
                f"{side}乳{depth}，{clock}",
            ]
        )
        head = f"{where}见一{kind}，大小约{size}。"
    parts: list[str] = []
    label = {
        "shape": ("Shape", "形态"),
        "margin": ("Margin", "边缘"),
        "internal_enhancement": ("Internal enhancement", "内部强化"),
        "nme_distribution": ("Distribution", "分布"),
        "nme_pattern": ("Internal enhancement pattern", "内部强化模式"),
        "kinetics_initial": ("Initial phase", "早期强化"),
        "kinetics_delayed": ("Delayed phase", "延迟期"),
        "t2_signal": ("T2", "T2信号"),
    }
    for key in (
        "shape",
        "margin",
        "internal_enhancement",
        "nme_distribution",
        "nme_pattern",
        "t2_signal",
        "kinetics_initial",
        "kinetics_delayed",
    ):
        if key not in f:
            continue
        term = w.term(f[key])
        noun_like = len(term.split()) > 1 and term.split()[-1] in NOUN_ENDINGS
        if w.rng.random() < 0.5 or (en and not noun_like):
            parts.append(f"{label[key][0]}: {term}." if en else f"{label[key][1]}：{term}。")
        else:
            parts.append(
                f"{w.pick(['It is', 'The lesion shows', 'It demonstrates'])} {term}."
                if en
                else f"{w.pick(['呈', '表现为', ''])}{term}。"
            )
    if "diffusion" in f:
        if f["diffusion"] == "diffusion_restricted" or w.rng.random() < 0.5:
            parts.append(
                f"{w.pick(['It shows', 'There is', 'Diffusion:'])} {w.term(f['diffusion'])}."
                if en
                else f"{w.term(f['diffusion'])}。"
            )
        else:
            parts.append(
                w.pick(["Without restricted diffusion.", "No restricted diffusion."])
                if en
                else w.pick(["未见弥散受限。", "无弥散受限。"])
            )
    order = w.rng.permutation(len(parts))
    return [head, *[parts[i] for i in order]]


def write_breast(report: Report, w: Writer) -> str:
    en = w.lang == "en"
    f = {k: v.value for k, v in report.fields.items()}
    out: list[str] = []
    if w.rng.random() < 0.6:
        out.append(
            w.pick(
                [
                    "Clinical history: screening.",
                    "Indication: palpable lump, evaluate.",
                    "History: high-risk screening.",
                ]
            )
            if en
            else w.pick(["临床病史：筛查。", "临床资料：触及肿块。", "病史：高危人群筛查。"])
        )
    out.append(
        "Technique: T2-weighted, diffusion-weighted and dynamic contrast-enhanced MRI of both breasts."
        if en
        else "检查方法：双乳T2WI、DWI及动态增强扫描。"
    )
    out.append("FINDINGS:" if en else "影像所见：")
    comp = w.term(f["fgt_amount"])
    out.append(
        w.pick(
            [
                f"Amount of fibroglandular tissue: {comp}.",
                f"The breasts show {comp}.",
                f"Breast composition: {comp}.",
            ]
        )
        if en
        else w.pick([f"纤维腺体组织量：{comp}。", f"双乳{comp}。", f"乳腺构成：{comp}。"])
    )
    bpe, sym = w.term(f["bpe_level"]), w.term(f["bpe_symmetry"])
    out.append(
        w.pick([f"Background parenchymal enhancement: {bpe}, {sym}.", f"BPE is {bpe} and {sym}."])
        if en
        else w.pick([f"背景实质强化：{bpe}，{sym}。", f"背景实质强化{bpe}，双侧{sym}。"])
    )
    findings = list(report.findings)
    w.rng.shuffle(findings)
    for finding in findings:
        sentences = _breast_finding(w, {k: v.value for k, v in finding.fields.items()})
        out.append(w.join(sentences))
    sides = {fi.fields["laterality"].value for fi in report.findings}
    for side in ("right", "left"):
        if side not in sides and w.rng.random() < 0.7:
            out.append(
                f"{w.cap(w.concepts[side].en)} breast: no suspicious enhancement."
                if en
                else f"{w.side(side)}乳未见可疑强化。"
            )
    bools = [
        k
        for k in (
            "axillary_adenopathy",
            "skin_thickening",
            "nipple_retraction",
            "chest_wall_invasion",
        )
        if k in f
    ]
    w.rng.shuffle(bools)
    if f.get("technically_adequate") is False:
        out.append(
            "Severe motion artefact. The examination is technically inadequate."
            if en
            else "运动伪影严重。检查技术不满意。"
        )
    for key in bools:
        value = bool(f[key])
        if value or w.rng.random() < 0.8:  # normal findings are sometimes left unsaid
            out.append(w.mention(key, value))
    out.append("IMPRESSION:" if en else "诊断意见：")
    out.append(_assessment_line(report, w))
    return "\n".join(out)


def _assessment_line(report: Report, w: Writer) -> str:
    en = w.lang == "en"
    d = {k: v.value for k, v in report.derived.items()}
    if "assessment" in d:
        n = d["assessment"].split("_")[1]
        mgmt = w.term(d["management"])
        if en:
            cat = w.pick([f"BI-RADS {n}", f"BI-RADS category {n}", f"BI-RADS: {n}"])
            return w.pick(
                [
                    f"{cat}. Recommendation: {mgmt}.",
                    f"{cat}; {mgmt} is recommended.",
                    f"Overall assessment {cat}. Management: {mgmt}.",
                ]
            )
        cat = w.pick([f"BI-RADS {n}类", f"BI-RADS分类：{n}类"])
        return w.pick([f"{cat}。建议：{mgmt}。", f"{cat}，{mgmt}。"])
    if "risk_score" in d:
        n = d["risk_score"].split("_")[1]
        if en:
            return w.pick(
                [f"O-RADS MRI {n}.", f"O-RADS MRI score {n}.", f"Overall: O-RADS MRI {n}."]
            )
        return w.pick([f"O-RADS MRI {n}分。", f"O-RADS MRI评分：{n}分。"])
    stage = w.term(d["stage"], p_pref=0.5)
    if en:
        return w.pick(
            [
                f"Imaging stage: {stage}.",
                f"Findings are consistent with {stage}.",
                f"MRI stage {stage}." if not stage.lower().startswith("stage") else f"MRI {stage}.",
            ]
        )
    return w.pick([f"影像分期：{stage}。", f"考虑{stage}。", f"符合{stage}。"])


def _tumour_line(report: Report, w: Writer) -> list[str]:
    en = w.lang == "en"
    t = {k: v.value for k, v in report.findings[0].fields.items()}
    domain = report.template.id
    kind = w.term(
        "cervical_carcinoma" if domain.startswith("figo_cervix") else "endometrial_carcinoma"
    )
    size = w.size(t["size_mm"])
    lines = [
        w.pick(
            [
                f"There is a {kind} measuring {size}.",
                f"{w.cap(kind)}, greatest dimension {size}.",
                f"A {kind} is seen, measuring {size}.",
            ]
        )
        if en
        else w.pick(
            [f"见{kind}，大小约{size}。", f"{kind}，最大径约{size}。", f"{kind}大小约{size}。"]
        )
    ]
    if "myometrial_invasion" in t:
        value = t["myometrial_invasion"]
        if value == "myometrial_invasion_superficial" and w.rng.random() < 0.3:
            lines.append(
                w.pick(["No deep myometrial invasion.", "There is no deep myometrial invasion."])
                if en
                else w.pick(["未见深肌层浸润。", "无深肌层侵犯。"])
            )
        else:
            lines.append(w.mention(value, True))
    return lines


SIDE_ZH = {"right": "右侧", "left": "左侧", "bilateral": "双侧"}


def _side_word(w: Writer, side: str) -> str:
    return SIDE_ZH[side] if w.lang == "zh" else w.term(side, p_pref=0.8)


def _parametrial_side(w: Writer, f: dict, side: str) -> str:
    term = w.term("parametrial_invasion")
    if w.lang == "zh":
        return f"{_side_word(w, side)}{term}。"
    return w.pick([f"{w.cap(_side_word(w, side))} {term}.", f"The {term} is {side}."])


def _node_side(w: Writer, f: dict, side: str) -> str:
    concept = (
        "pelvic_lymph_node_metastasis"
        if f.get("pelvic_nodes")
        else "paraaortic_lymph_node_metastasis"
    )
    term = w.term(concept)
    if w.lang == "zh":
        return f"{_side_word(w, side)}{term}。"
    return f"{w.cap(_side_word(w, side))} {term}."


def _node_short_axis(w: Writer, f: dict, mm: float) -> str:
    if w.lang == "zh":
        return f"最大转移淋巴结{w.term('node_short_axis')}约{round(mm)}mm。"
    return w.pick(
        [
            f"The largest metastatic node measures {round(mm)} mm in short axis.",
            f"Largest node {round(mm)} mm in short axis.",
        ]
    )


# FIGO detail a radiologist writes as one phrase with its anchor ("right parametrial
# invasion", "the largest node measures 15 mm in short axis")
GYNAE_DETAIL = {
    "parametrial_side": _parametrial_side,
    "node_side": _node_side,
    "node_short_axis_mm": _node_short_axis,
}


def write_gynae(report: Report, w: Writer, template: Template) -> str:
    en = w.lang == "en"
    f = {k: v.value for k, v in report.fields.items()}
    out = [
        w.pick(["Clinical history: staging.", "Indication: biopsy-proven carcinoma, staging."])
        if en
        else w.pick(["临床资料：病理证实恶性肿瘤，分期。", "病史：术前分期。"])
    ]
    out.append(
        "Technique: pelvic MRI with T2-weighted, diffusion-weighted and dynamic contrast-enhanced sequences."
        if en
        else "检查方法：盆腔MRI平扫、DWI及动态增强扫描。"
    )
    out.append("FINDINGS:" if en else "影像所见：")
    out.extend(_tumour_line(report, w))
    keys = [spec.id for spec in template.fields if spec.id in f]
    w.rng.shuffle(keys)
    for key in keys:
        spec = template.field(key)
        value = f[key]
        if key in GYNAE_DETAIL:
            out.append(GYNAE_DETAIL[key](w, f, value))
            continue
        if spec.type == "bool":
            if value or w.rng.random() < 0.85:
                out.append(w.mention(spec.concept, bool(value)))
        elif spec.negated is not None and value == spec.negated:
            if w.rng.random() < 0.85:
                out.append(w.mention(spec.concept, False))
        else:
            out.append(w.mention(str(value), True))
    out.append("IMPRESSION:" if en else "诊断意见：")
    out.append(_assessment_line(report, w))
    return "\n".join(out)


def _adnexal_lesion(w: Writer, finding, template: Template) -> list[str]:
    en = w.lang == "en"
    f = {k: v.value for k, v in finding.fields.items()}
    side, kind, size = w.side(f["laterality"]), w.term(f["composition"]), w.size(f["size_mm"])
    lines = [
        w.pick(
            [
                f"{w.cap(side)} adnexa: {kind} measuring {size}.",
                f"In the {side} adnexa there is a {kind}, {size}.",
                f"A {kind} of the {side} ovary measures {size}.",
            ]
        )
        if en
        else w.pick(
            [f"{side}附件区见{kind}，大小约{size}。", f"{side}侧附件{kind}，大小约{size}。"]
        )
    ]
    for key in ("fluid", "wall", "lipid", "solid_tissue", "dark_t2_dwi", "tic"):
        if key not in f:
            continue
        spec = template.field(key)
        if spec.type == "bool":
            if f[key] or w.rng.random() < 0.85:
                lines.append(w.mention(spec.concept, bool(f[key])))
        else:
            lines.append(w.mention(str(f[key]), True))
    n = finding.derived["score"].value.split("_")[1]
    lines.append(w.pick([f"O-RADS MRI {n} lesion."]) if en else f"该病变O-RADS MRI {n}分。")
    return lines


def write_adnexa(report: Report, w: Writer, template: Template) -> str:
    en = w.lang == "en"
    f = {k: v.value for k, v in report.fields.items()}
    out = [
        w.pick(
            ["Clinical history: adnexal mass.", "Indication: characterisation of an adnexal mass."]
        )
        if en
        else w.pick(["临床资料：附件包块。", "病史：附件区占位待定性。"]),
        "Technique: pelvic MRI with T2-weighted, diffusion-weighted and dynamic contrast-enhanced sequences."
        if en
        else "检查方法：盆腔MRI平扫、DWI及动态增强扫描。",
        "FINDINGS:" if en else "影像所见：",
    ]
    if not report.findings and template.finding_none is not None:
        out.append(template.finding_none[w.lang])
    for finding in report.findings:
        out.extend(_adnexal_lesion(w, finding, template))
    for key in ("ascites", "peritoneal_implants"):
        if f[key] or w.rng.random() < 0.85:
            out.append(w.mention(template.field(key).concept, bool(f[key])))
    out.append("IMPRESSION:" if en else "诊断意见：")
    out.append(_assessment_line(report, w))
    return "\n".join(out)


VESSEL_WORDS = {  # the template's vessel fields as radiologists name the vessel
    "sma_contact": ("superior_mesenteric_artery", "SMA", "肠系膜上动脉"),
    "celiac_contact": ("celiac_axis", "celiac axis", "腹腔干"),
    "cha_contact": ("common_hepatic_artery", "CHA", "肝总动脉"),
    "smv_contact": ("superior_mesenteric_vein", "SMV", "肠系膜上静脉"),
    "pv_contact": ("portal_vein", "portal vein", "门静脉"),
}


def _vessel_line(w: Writer, field_id: str, value: str) -> str:
    """One vessel's contact as a radiologist dictates it."""
    concept, short, zh = VESSEL_WORDS[field_id]
    name = w.pick([w.term(concept, p_pref=0.6), short]) if w.lang == "en" else zh
    kind = value.rsplit("_", 1)[1]
    if w.lang == "en":
        return w.pick(
            {
                "none": [
                    f"No tumour contact with the {name}.",
                    f"The {name} is clear.",
                    f"{w.cap(name)}: no contact.",
                ],
                "le180": [
                    f"Tumour contact with the {name} of 180 degrees or less.",
                    f"{w.cap(name)}: abutment (<= 180 degrees).",
                ],
                "gt180": [
                    f"Tumour encases the {name} (more than 180 degrees).",
                    f"{w.cap(name)}: contact > 180 degrees.",
                ],
                "occlusion": [f"The {name} is occluded by tumour.", f"{w.cap(name)}: occluded."],
            }[kind]
        )
    return {
        "none": f"{name}未受累。",
        "le180": f"肿瘤与{name}接触≤180°。",
        "gt180": f"肿瘤包绕{name}>180°。",
        "occlusion": f"{name}闭塞。",
    }[kind]


def write_pancreas(report: Report, w: Writer, template: Template) -> str:
    en = w.lang == "en"
    f = {k: v.value for k, v in report.fields.items()}
    out = [
        w.pick(["Clinical history: jaundice, weight loss.", "Indication: pancreatic mass?"])
        if en
        else w.pick(["临床资料：黄疸、消瘦。", "病史：胰腺占位待查。"]),
        "Technique: pancreatic protocol CT, pancreatic and portal venous phases."
        if en
        else "检查方法：胰腺期及门静脉期增强CT。",
        "FINDINGS:" if en else "影像所见：",
    ]
    if not report.findings and template.finding_none is not None:
        out.append(template.finding_none[w.lang])
    for finding in report.findings:
        v = {k: x.value for k, x in finding.fields.items()}
        kind, where, size = w.term(str(v["type"])), w.term(str(v["location"])), w.size(v["size_mm"])
        out.append(
            w.pick(
                [f"A {kind} in the {where} measuring {size}.", f"{w.cap(where)}: {kind}, {size}."]
            )
            if en
            else w.pick([f"{where}见{kind}，大小约{size}。", f"{where}{kind}，约{size}。"])
        )
        if "attenuation" in v:
            out.append(w.mention(str(v["attenuation"]), True))
        if "duct_cutoff" in v and (v["duct_cutoff"] or w.rng.random() < 0.7):
            out.append(w.mention("duct_cutoff", bool(v["duct_cutoff"])))
        for field_id in VESSEL_WORDS:
            if field_id in v:
                out.append(_vessel_line(w, field_id, str(v[field_id])))
        if "vein_irregularity" in v:
            out.append(w.mention("venous_contour_irregularity", bool(v["vein_irregularity"])))
    for key in (
        "duct_dilatation",
        "biliary_dilatation",
        "liver_metastases",
        "peritoneal_nodules",
        "ascites",
        "regional_nodes",
        "nonregional_nodes",
    ):
        if key in f and (f[key] or w.rng.random() < 0.85):
            out.append(w.mention(template.field(key).concept, bool(f[key])))
    out.append("IMPRESSION:" if en else "诊断意见：")
    status = w.term(str(report.derived["resectability"].value), p_pref=0.7)
    out.append(
        w.pick([f"NCCN resectability: {status}.", f"Resectability status: {status}."])
        if en
        else f"NCCN可切除性：{status}。"
    )
    return "\n".join(out)


def free_text(report: Report, template: Template, lang: str, rng: np.random.Generator) -> str:
    writer = Writer(lang, rng)
    if template.id == "birads_mri":
        return write_breast(report, writer)
    if template.id == "orads_mri":
        return write_adnexa(report, writer, template)
    if template.id == "pancreas_ct":
        return write_pancreas(report, writer, template)
    return write_gynae(report, writer, template)

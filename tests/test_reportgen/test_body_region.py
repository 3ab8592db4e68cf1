"""Body region from the image: breast or pelvis, how unusual, and the model it calls for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA, assert_refused

from reportgen.data import read_manifest
from reportgen.errors import ConfigError
from reportgen.io import load_study
from reportgen.io.study import Study, Volume
from reportgen.model import fitness
from reportgen.model.body_region import RegionReading, load_region_model, read_region
from reportgen.model.generators import template_for
from reportgen.model.region_training import RegionTrainArgs, train_region_model
from reportgen.report import load_template
from reportgen.synth import SynthOptions, synth_dataset

PROSTATEX = DATA / "prostatex" / "ProstateX-0000"


@pytest.fixture(scope="module")
def tiny_region_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("region")
    for domain, seed in (("breast", 3), ("cervix", 4)):
        synth_dataset(
            root / domain,
            4,
            SynthOptions(protocol="low_resolution", domain=domain, seed=seed),
            workers=1,
        )
    synth_dataset(
        root / "calib",
        2,
        SynthOptions(protocol="low_resolution", domain="ovary", seed=9),
        workers=1,
    )
    out = root / "model"
    summary = train_region_model(
        RegionTrainArgs(
            data=[root / "breast", root / "cervix"], out=out, calibration=[root / "calib"], epochs=2
        ),
        log=lambda _: None,
    )
    return root, out, summary


def test_region_model_trains_saves_and_reloads_strictly(tiny_region_model):
    root, out, summary = tiny_region_model
    assert summary["per_region"] == {"breast": 4, "pelvis": 4}
    assert summary["calibration_studies"] == 2 and np.isfinite(summary["threshold"])
    model = load_region_model(out)
    row = read_manifest(root / "cervix")[0]
    reading = read_region(model, load_study(root / "cervix" / row["dir"]))
    assert reading.region in ("breast", "pelvis") and 0.5 <= reading.probability <= 1.0
    assert reading.threshold == pytest.approx(summary["threshold"], abs=1e-3)
    config = json.loads((out / "config.json").read_text())
    config["embedding"] = 16  # another shape than the weights: refused, not half-loaded
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="weights do not fit"):
        load_region_model(out)


def _reading(region: str, distance: float = 1.0) -> RegionReading:
    return RegionReading(region, 0.97, distance, threshold=5.0)


def test_the_tag_wins_and_the_image_speaks_when_there_is_no_tag():
    breast = load_template("birads_mri")
    untagged_pelvis = fitness.Anatomy(None, _reading("pelvis"))
    assert "looks like a pelvis study" in fitness.fitness_problems(untagged_pelvis, breast)[0]
    assert fitness.fitness_problems(fitness.Anatomy("BREAST", _reading("pelvis")), breast) == []
    prostate = fitness.Anatomy("PROSTATE", _reading("pelvis"))
    assert "BodyPartExamined is PROSTATE" in fitness.fitness_problems(prostate, breast)[0]
    assert prostate.region == "prostate"
    # no tag and no T2W to read the region from: it cannot be placed, so it is not drafted
    assert "no T2W series" in fitness.fitness_problems(fitness.Anatomy(None, None), breast)[0]
    unusual = fitness.Anatomy(None, _reading("breast", 9.0))
    assert unusual.region is None  # an unusual image's answer is not used
    assert "cannot be checked" in fitness.fitness_problems(unusual, breast)[0]


def test_an_unusual_study_is_drafted_with_a_warning_in_its_report():
    from reportgen.report import build_report
    from reportgen.report.schema import Provenance, StudyRef

    report = build_report(
        load_template("birads_mri"),
        {},
        [],
        study=StudyRef(study_id="s", sequences_used=["T2W"], sequences_missing=[]),
        provenance=Provenance(source="model"),
    )
    added = fitness.add_fitness_warnings(report, [], fitness.Anatomy(None, _reading("breast", 9.0)))
    assert len(added) == 1 and "unlike the phantoms" in added[0]
    assert report.validation.problems[0].rule == "unusual_study"
    assert fitness.unusual_problem(fitness.Anatomy(None, _reading("breast", 4.0))) is None
    # forced, untagged and unusual: the one fitness warning says it (it was said twice)
    unusual = fitness.Anatomy(None, _reading("breast", 9.0))
    forced = fitness.add_fitness_warnings(
        report.model_copy(deep=True),
        fitness.fitness_problems(unusual, load_template("birads_mri")),
        unusual,
    )
    assert len(forced) == 1 and "unlike every study" in forced[0], forced


def test_the_anatomy_chooses_the_bundled_template():
    assert template_for("BREAST", "breast") == "birads_mri"
    assert template_for("CERVIX", "pelvis") == "figo_cervix_2018"
    assert template_for(None, "breast") == "birads_mri"
    assert template_for(None, None) == "birads_mri"  # nothing says otherwise
    with pytest.raises(ConfigError, match="name one with --template"):
        template_for(None, "pelvis")  # cervix, endometrium or adnexa: the question decides
    with pytest.raises(fitness.StudyMismatch, match=r"BodyPartExamined is PROSTATE.*--force"):
        template_for("PROSTATE", "prostate")
    assert template_for("PROSTATE", "prostate", force=True) == "birads_mri"


def _untagged(study: Study) -> Study:
    return Study("untagged", dict(study.sequences), study.source, study.form)


def test_bundled_region_model_reads_phantoms_and_flags_a_real_prostate(tmp_path):
    model = fitness.bundled_region_model()
    assert model is not None, "the body-region reader is bundled"
    for domain, expected in (("breast", "breast"), ("endometrium", "pelvis")):
        synth_dataset(
            tmp_path / domain,
            1,
            SynthOptions(protocol="low_resolution", domain=domain, seed=31),
            workers=1,
        )
        row = read_manifest(tmp_path / domain)[0]
        reading = read_region(model, load_study(tmp_path / domain / row["dir"]))
        assert reading.region == expected and not reading.unusual
    # a real prostate is unlike every phantom: flagged, and its region is not guessed
    real = fitness.study_anatomy(_untagged(load_study(PROSTATEX)))
    assert real.reading.unusual and real.region is None
    problems = fitness.fitness_problems(real, load_template("birads_mri"))
    assert "body region cannot be checked" in problems[0]
    tagged = fitness.study_anatomy(load_study(PROSTATEX))
    assert tagged.region == "prostate"  # the tag speaks, whatever the image


def test_generate_refuses_an_untagged_pelvis_for_the_breast_model(tmp_path, cli):
    synth_dataset(
        tmp_path / "d",
        1,
        SynthOptions(protocol="low_resolution", domain="cervix", seed=32),
        workers=1,
    )
    study = tmp_path / "d" / read_manifest(tmp_path / "d")[0]["dir"]
    assert_refused(cli("generate", study, "--no-explain"), "pelvis", "--template")
    result = cli("generate", study, "--template", "birads_mri", "--no-explain")
    assert_refused(result, "looks like a pelvis study", "--force")


def test_a_study_without_t2w_is_not_read_for_its_region():
    image = Volume(np.ones((8, 8, 4), np.float32), np.eye(4), "x")
    anatomy = fitness.study_anatomy(Study("s", {"ADC": image}, "x", "nifti3d"))
    assert anatomy.reading is None and anatomy.region is None

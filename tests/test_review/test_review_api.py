"""Every route of the review app, with its refusals; nothing is stored by a refused request."""

from __future__ import annotations

import pytest
from conftest import tree_snapshot
from fastapi.testclient import TestClient
from helpers.review import PASSWORD, csrf_from, make_db, page_data, sign_in, studies_with_draft

from reportgen.render import render_text
from reportgen.report import load_template
from reportgen.review.app import ReviewSettings, create_app
from reportgen.review.drafts import import_drafts
from reportgen.review.store import RewardLog


@pytest.fixture(params=["sqlite", "postgres"])
def app_env(request, tmp_path):
    db = make_db(request.param, tmp_path)
    root, draft, truth = studies_with_draft(tmp_path / "studies")
    store = RewardLog(db)
    assert import_drafts(store, root) == (1, 1)
    store.accounts.add("alice", "Dr Alice", PASSWORD)
    client = TestClient(create_app(ReviewSettings(db=db, studies=root), store))
    yield client, store, root, draft, truth
    store.close()


def signed_in_page(client, draft_id=1):
    assert sign_in(client).status_code == 303
    page = client.get(f"/drafts/{draft_id}")
    assert page.status_code == 200
    return csrf_from(page.text), page_data(page.text)


def test_signed_out_visitors_see_only_the_sign_in_page(app_env):
    client, store, *_ = app_env
    for path in ("/", "/drafts/1", "/drafts/1/slice.png?seq=T2W", "/drafts/1/volumes/T2W.nii.gz"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/api/drafts/1").status_code == 401
    before = store.audit_trail()
    for path in ("/api/drafts/1/revisions", "/api/drafts/1/sign", "/api/drafts/1/preview"):
        assert client.post(path, json={"version": 0, "report": {}}).status_code == 401
    assert store.revision_numbers(1) == [] and store.audit_trail() == before
    login = client.get("/login")
    assert login.status_code == 200 and "Sign in" in login.text
    assert "default-src 'self'" in login.headers["content-security-policy"]
    assert login.headers["x-frame-options"] == "DENY"


def test_sign_in_needs_the_right_password_and_the_csrf_token(app_env):
    client, *_ = app_env
    token = csrf_from(client.get("/login").text)
    wrong = client.post(
        "/login", data={"username": "alice", "password": "nope nope nope", "csrf_token": token}
    )
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    no_csrf = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert no_csrf.status_code == 403
    assert sign_in(client).status_code == 303
    worklist = client.get("/")
    assert worklist.status_code == 200 and "#1" in worklist.text and "draft" in worklist.text


def test_review_page_offers_only_the_templates_values(app_env):
    client, _, _, draft, _ = app_env
    _, page = signed_in_page(client)
    margin = next(c for c in page["finding_controls"] if c["id"] == "margin")
    template = load_template("birads_mri")
    assert tuple(v for v, _ in margin["options"]) == template.field("margin").values
    size = next(c for c in page["finding_controls"] if c["id"] == "size_mm")
    assert size["unit"] == "mm" and size["minimum"] is not None and size["maximum"] is not None
    assert page["values"]["findings"][0]["size_mm"] == draft.findings[0].fields["size_mm"].value
    assert set(page["sequences"]) >= {"T2W", "DWI", "ADC"}
    zh = client.get("/drafts/1?lang=zh")
    assert zh.status_code == 200 and template.title["zh"] in zh.text
    assert "是" in zh.text and template.title["zh"] not in client.get("/drafts/1").text


def test_slices_are_pngs_and_paths_outside_the_studies_folder_are_refused(app_env, tmp_path):
    client, store, root, draft, _ = app_env
    signed_in_page(client)
    png = client.get("/drafts/1/slice.png?seq=T2W&z=5&level=100&width=200")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/drafts/1/slice.png?seq=NOPE").status_code == 404
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    for study_path in ("../outside", "link", "/etc"):
        moved = draft.model_copy(deep=True)
        moved.study.study_id = f"other-{study_path.strip('./')}"
        draft_id, _ = store.add_draft(moved, study_path=study_path, source_path="x.json")
        assert client.get(f"/drafts/{draft_id}/slice.png?seq=T2W").status_code == 403
    assert client.get("/drafts/999").status_code == 404


def _nifti(response):
    import gzip

    import nibabel as nib

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    return nib.Nifti1Image.from_bytes(gzip.decompress(response.content))


def test_the_viewer_gets_each_volume_as_nifti_with_nothing_but_voxels(app_env):
    import numpy as np

    from reportgen.io import load_study
    from reportgen.report.schema import Box, Evidence
    from reportgen.review.viewer import DisplayVolume

    client, store, root, draft, _ = app_env
    boxed = draft.model_copy(deep=True)
    boxed.study.study_id = "boxed"
    box = Box(min_mm=(10.0, -20.0, -8.0), max_mm=(30.0, 0.0, 12.0))
    boxed.findings[0].evidence = Evidence(box=box)
    study_path = store.state(1).study_path
    boxed_id, _ = store.add_draft(boxed, study_path=study_path, source_path="x.json")
    _, page = signed_in_page(client, boxed_id)
    names = {v["name"]: v["kind"] for v in page["viewer"]["volumes"]}
    assert names["SUB"] == "image" and names["DCE"] == "dynamic" and names["boxes"] == "overlay"
    assert "heat" not in names  # boxed, but with no heat map
    [finding] = [f for f in page["viewer"]["findings"] if f["number"] == 1]
    assert finding["centre_mm"] == [20.0, -10.0, 2.0]

    study = load_study(root / study_path)
    shown = {k: DisplayVolume.of(v.data, v.affine) for k, v in study.sequences.items()}
    t2 = _nifti(client.get(f"/drafts/{boxed_id}/volumes/T2W.nii.gz"))
    assert np.allclose(t2.affine, shown["T2W"].affine, atol=1e-4)
    peak = np.abs(shown["T2W"].data).max()
    assert np.abs(np.asarray(t2.dataobj) - shown["T2W"].data).max() <= peak / 32767
    header = t2.header
    assert header["descrip"].item() == b"" and header["db_name"].item() == b""
    assert header["cal_max"] > header["cal_min"]

    sub = np.asarray(_nifti(client.get(f"/drafts/{boxed_id}/volumes/SUB.nii.gz")).dataobj)
    expected = shown["DCE_1"].data - shown["DCE_0"].data
    assert np.abs(sub - expected).max() <= np.abs(expected).max() / 32767 + 1e-6
    mip = _nifti(client.get(f"/drafts/{boxed_id}/volumes/MIP.nii.gz"))
    assert mip.shape == (*expected.shape[:2], 1)
    assert np.allclose(np.asarray(mip.dataobj)[..., 0], expected.max(axis=2), atol=1e-3)
    dce = _nifti(client.get(f"/drafts/{boxed_id}/volumes/DCE.nii.gz"))
    phases = sum(name.startswith("DCE_") for name in shown)
    assert dce.shape == (*expected.shape, phases)

    boxes = _nifti(client.get(f"/drafts/{boxed_id}/volumes/boxes.nii.gz"))
    labels = np.asarray(boxes.dataobj)
    assert boxes.get_data_dtype() == np.uint8 and set(np.unique(labels)) == {0, 1}
    voxels = np.argwhere(labels == 1)
    world = boxes.affine[:3, :3] @ voxels.T + boxes.affine[:3, 3:4]
    spacing = np.abs(np.diag(boxes.affine)[:3])
    assert np.all(np.abs(world.min(1) - box.min_mm) <= spacing)
    assert np.all(np.abs(world.max(1) - box.max_mm) <= spacing)
    centre = np.round(np.linalg.inv(boxes.affine) @ [20.0, -10.0, 2.0, 1.0])[:3].astype(int)
    assert labels[tuple(centre)] == 0  # faces only: the lesion inside stays visible

    assert client.get(f"/drafts/{boxed_id}/volumes/heat.nii.gz").status_code == 404
    assert client.get(f"/drafts/{boxed_id}/volumes/NOPE.nii.gz").status_code == 404
    assert client.get(f"/drafts/{boxed_id}/volumes/..%2Fx.nii.gz").status_code == 404
    assert client.get("/drafts/1/volumes/SUB.nii.gz").status_code == 200
    outside, _ = store.add_draft(
        boxed.model_copy(update={"study": boxed.study.model_copy(update={"study_id": "o"})}),
        study_path="../outside",
        source_path="x.json",
    )
    assert client.get(f"/drafts/{outside}/volumes/T2W.nii.gz").status_code == 403


def test_preview_recomputes_derived_results_and_normalises_the_comment(app_env):
    client, *_ = app_env
    csrf, page = signed_in_page(client)
    form = page["values"]
    form["findings"][0]["margin"] = "margin_spiculated"
    form["comment"] = "Margins look spiculated."
    response = client.post(
        "/api/drafts/1/preview", json={"report": form}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 200
    data = response.json()
    assert data["derived"]["assessment"] in (
        "birads_4",
        "birads_4a",
        "birads_4b",
        "birads_4c",
        "birads_5",
    )
    assert "Comment" in data["narrative"] and data["valid"]
    form["findings"][0]["size_mm"] = 99999
    bad = client.post(
        "/api/drafts/1/preview", json={"report": form}, headers={"X-CSRF-Token": csrf}
    ).json()
    assert not bad["valid"] and any("range" in p["message"] for p in bad["problems"])


def test_a_reader_adds_the_lexicon_findings_no_model_drafts(app_env):
    """The form offers the BI-RADS fields only a reader states (implants, an
    intramammary node, non-enhancing findings) and the preview says what they are."""
    client, *_ = app_env
    csrf, page = signed_in_page(client)
    offered = {c["id"]: c for c in page["report_controls"]}
    assert {"implant_material", "implant_integrity", "intramammary_lymph_node"} <= set(offered)
    assert ["implant_silicone", "silicone implant"] in offered["implant_material"]["options"]
    form = page["values"]
    form["fields"]["implant_material"] = "implant_silicone"
    form["fields"]["implant_integrity"] = "implant_extracapsular_rupture"
    response = client.post(
        "/api/drafts/1/preview", json={"report": form}, headers={"X-CSRF-Token": csrf}
    )
    data = response.json()
    assert response.status_code == 200 and data["valid"], data
    assert "Implant integrity: extracapsular rupture." in data["narrative"]


def test_saves_and_signing_with_every_refusal_storing_nothing(app_env):
    client, store, root, _, truth = app_env
    csrf, page = signed_in_page(client)
    form = page["values"]
    headers = {"X-CSRF-Token": csrf}
    snapshot = tree_snapshot(root)
    before = store.audit_trail()
    refusals = [
        ({"version": 0, "report": form}, {}, 403),  # no CSRF token
        ({"version": 0, "report": form}, {"X-CSRF-Token": "forged"}, 403),
        ({"report": form}, headers, 422),  # no version
        ({"version": 0, "report": {**form, "fields": {"no_such_field": 1}}}, headers, 422),
        (
            {
                "version": 0,
                "report": {**form, "findings": [{**form["findings"][0], "margin": "birads_5"}]},
            },
            headers,
            422,
        ),
        (
            {
                "version": 0,
                "report": {**form, "findings": [{**form["findings"][0], "size_mm": "big"}]},
            },
            headers,
            422,
        ),
        ({"version": 0, "report": "not an object"}, headers, 422),
        ({"version": 0, "report": {**form, "indication": "pain\x07"}}, headers, 422),
        ({"version": 0, "report": {**form, "indication": "x" * 501}}, headers, 422),
        ({"version": 0, "report": {**form, "indication": 3}}, headers, 422),
        ({"version": 3, "report": form}, headers, 409),  # a version that does not exist yet
    ]
    for body, hdrs, status in refusals:
        response = client.post("/api/drafts/1/revisions", json=body, headers=hdrs)
        assert response.status_code == status, (body, response.text)
        assert "error" in response.json()
    malformed = client.post(
        "/api/drafts/1/revisions",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert (
        client.post(
            "/api/drafts/999/revisions", json={"version": 0, "report": form}, headers=headers
        ).status_code
        == 404
    )
    assert store.revision_numbers(1) == [] and store.audit_trail() == before
    assert tree_snapshot(root) == snapshot

    form["findings"][0]["size_mm"] = truth.findings[0].fields["size_mm"].value
    assert form["indication"] == ""  # the draft gave none
    form["indication"] = "  palpable lump,\n left breast  "
    saved = client.post(
        "/api/drafts/1/revisions", json={"version": 0, "report": form}, headers=headers
    )
    assert saved.json() == {"version": 1, "status": "in review"}
    stale = client.post(
        "/api/drafts/1/revisions", json={"version": 0, "report": form}, headers=headers
    )
    assert stale.status_code == 409 and "reload" in stale.json()["error"]
    assert client.get("/api/drafts/1").json()["version"] == 1
    form["findings"][0]["margin"] = truth.findings[0].fields["margin"].value
    signed = client.post("/api/drafts/1/sign", json={"version": 1, "report": form}, headers=headers)
    assert signed.status_code == 200 and signed.json()["status"] == "signed"
    again = client.post("/api/drafts/1/sign", json={"version": 2, "report": form}, headers=headers)
    assert again.status_code == 409
    [record] = list(store.corrections())
    assert {c.field for c in record.diff.changes} >= {"size_mm", "margin"}
    assert "signed" in client.get("/").text
    # the signed report states who signed it and when; an edit cannot carry a signature
    signed_report = store.state(1).current
    assert signed_report.provenance.signed_by == "Dr Alice" and signed_report.provenance.signed_at
    assert "Signed by Dr Alice on " in render_text(signed_report, "en")
    assert signed_report.study.indication == "palpable lump, left breast"
    assert "Indication: palpable lump, left breast" in render_text(signed_report, "en")
    assert "Signed by" not in render_text(store.state(1).draft, "en")


def test_shown_text_is_escaped(app_env):
    client, store, _, draft, _ = app_env
    evil = draft.model_copy(deep=True)
    evil.study.study_id = "<script>alert(1)</script>"
    evil.comment = "<img src=x onerror=alert(1)>"
    draft_id, _ = store.add_draft(evil)
    signed_in_page(client)
    worklist = client.get("/").text
    assert "<script>alert(1)</script>" not in worklist and "&lt;script&gt;" in worklist
    page = client.get(f"/drafts/{draft_id}").text
    assert "<img src=x" not in page and "<script>alert" not in page


def test_sign_out_ends_the_session(app_env):
    client, store, *_ = app_env
    csrf, _ = signed_in_page(client)
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert (
        client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    )
    assert client.get("/api/drafts/1").status_code == 401
    assert [e["action"] for e in store.audit_trail()][-1] == "sign_out"


def test_the_worklist_shows_each_headline_and_lists_suspicious_drafts_first(app_env):
    from helpers.report_examples import BREAST, SPICULATED

    from reportgen.report import build_report
    from reportgen.report.schema import Provenance, StudyRef

    client, store, _, _, _ = app_env
    added = {}
    for name, findings in (("negative", []), ("spiculated", [SPICULATED])):
        drafted = build_report(
            load_template("birads_mri"),
            BREAST,
            findings,
            study=StudyRef(
                study_id=f"s-{name}",
                indication="screening, BRCA1 carrier" if findings else None,
                study_date="2026-11-30" if findings else None,
            ),
            provenance=Provenance(source="model", model_name="test"),
        )
        added[drafted.derived["assessment"].value], _ = store.add_draft(drafted)
    assert set(added) == {"birads_1", "birads_5"}
    rows = store.worklist()
    headline = {r.draft_id: r.headline for r in rows}
    assert headline[added["birads_5"]] == "birads_5" and headline[added["birads_1"]] == "birads_1"
    first = [r.draft_id for r in rows if r.first]
    assert added["birads_5"] in first and added["birads_1"] not in first
    assert [r.draft_id for r in rows][: len(first)] == first  # the suspicious ones on top
    signed_in_page(client)
    page = client.get("/").text
    assert "BI-RADS 5: highly suggestive of malignancy" in page
    assert {r.draft_id: r.indication for r in rows}[added["birads_5"]] == "screening, BRCA1 carrier"
    assert "screening, BRCA1 carrier" in page and "not provided" in page
    assert '<td class="study-date">2026-11-30</td>' in page
    assert '<td class="study-date">not recorded</td>' in page
    assert page.index(f'href="/drafts/{added["birads_5"]}"') < page.index(
        f'href="/drafts/{added["birads_1"]}"'
    )
    only = client.get("/", params={"template": "orads_mri"}).text
    assert "open-draft" not in only  # no O-RADS drafts: the filter shows none


def test_the_form_marks_required_only_what_always_applies_and_signing_asks_to_attest(app_env):
    client, *_ = app_env
    _, page = signed_in_page(client)
    required = {c["id"]: c["required"] for c in page["finding_controls"]}
    assert required["laterality"] and required["size_mm"]  # every finding states them
    assert not required["nme_distribution"] and not required["shape"]  # only where they apply
    assert page["finding_min"] == load_template("birads_mri").finding_min
    assert page["attestation"].endswith("and I sign it as Dr Alice.")


def test_the_viewer_s_volumes_are_encoded_once_and_the_cache_is_bounded(tmp_path):
    from reportgen.review.viewer import StudyCache

    cache = StudyCache()
    calls = []

    def encode(size):
        def run():
            calls.append(size)
            return b"x" * size

        return run

    assert cache.encoded(tmp_path, "T2W", encode(10)) == b"x" * 10
    assert cache.encoded(tmp_path, "T2W", encode(99)) == b"x" * 10  # encoded once
    assert calls == [10]
    cache.ENCODED_BYTES = 25
    cache.encoded(tmp_path, "SUB", encode(10))
    cache.encoded(tmp_path, "DCE", encode(10))  # 30 bytes: the oldest goes
    cache.encoded(tmp_path, "T2W", encode(7))
    assert calls == [10, 10, 10, 7]


def test_a_signed_in_clinician_asks_the_draft_and_nothing_is_stored(app_env):
    client, store, _, draft, _ = app_env
    assert (
        client.get("/api/drafts/1/ask", params={"q": "How many masses are there?"}).status_code
        == 401
    )
    signed_in_page(client)
    before = store.audit_trail()
    got = client.get("/api/drafts/1/ask", params={"q": "How many masses are there?"})
    assert got.status_code == 200
    data = got.json()
    assert data["answer"] == len(draft.findings) and data["answered_from"] == "the model's draft"
    side = draft.findings[0].fields["laterality"].value
    yes = client.get("/api/drafts/1/ask", params={"q": f"Is there a mass in the {side} breast?"})
    assert yes.json()["answer"] is True and yes.json()["evidence"][0]["finding"] == 1
    refused = client.get("/api/drafts/1/ask", params={"q": "<script>alert(1)</script> weather?"})
    assert refused.status_code == 200 and refused.json()["status"] == "refused"
    assert client.get("/api/drafts/1/ask", params={"q": "x" * 301}).status_code == 422
    assert client.get("/api/drafts/1/ask", params={"q": " "}).status_code == 422
    assert store.audit_trail() == before and store.revision_numbers(1) == []
    page = client.get("/drafts/1")
    assert 'id="ask-question"' in page.text
